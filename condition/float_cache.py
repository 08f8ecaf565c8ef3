"""The trained float model cache both frontends share: `condition compare` runs many chains on the
same float model, and this trains it once per identity (model, data set, epochs, seed, limit…).

Each entry is a folder `<cache_dir>/<hash of identity>/` holding what the frontend's `save` wrote
and `identity.json`; it appears whole through one rename (`atomic_folder`), so no lock is needed:
two processes that train the same model at once both succeed and the first stored entry stays.
A frontend supplies only how to save and load its model (Keras `model.save`, torch `state_dict`).
Both frontends also `store` each epoch of a training as the entry of that many epochs (the same
bytes as a training that stops there), so a search's same-epochs baselines train one float model.

    model, hit = cached(out / "tf" / ".float-cache", identity, train, save, load)
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar

from condition.backend.atomic import atomic_folder, write_json_atomic
from condition.backend.metrics import config_hash
from condition.threads import COMPUTE_THREADS

log = logging.getLogger(__name__)
M = TypeVar("M")
IDENTITY_FILE = "identity.json"


def cached(
    cache_dir: str | Path,
    identity: dict[str, Any],
    train: Callable[[], M],
    save: Callable[[M, Path], None],
    load: Callable[[Path], M],
) -> tuple[M, bool]:
    """(model, came_from_cache): `load(folder)` the entry for `identity`, or `train()` and store it
    with `save(model, folder)`. A damaged entry is retrained and replaced, never fatal."""
    folder = entry(cache_dir, identity)
    if folder.is_dir():
        try:
            return load(folder), True
        except Exception as exc:  # noqa: BLE001 — a truncated or stale file of any kind means "retrain"
            log.warning("float cache %s unreadable (%s); retraining", folder, exc)
            shutil.rmtree(folder, ignore_errors=True)
    model = train()
    store(cache_dir, identity, lambda: model, save)
    return model, False


def _keyed(identity: dict[str, Any]) -> dict[str, Any]:
    return {**identity, "compute_threads": COMPUTE_THREADS}  # trained weights depend on it


def entry(cache_dir: str | Path, identity: dict[str, Any]) -> Path:
    """The folder of `identity`'s entry (it may not exist)."""
    return Path(cache_dir) / config_hash(_keyed(identity))


def store(cache_dir: str | Path, identity: dict[str, Any], make: Callable[[], Any], save: Callable[[Any, Path], None]) -> None:
    """Write the model `make()` gives as the entry of `identity` unless one is there (then `make`
    is not called). Training also stores its epoch snapshots this way: the model after epoch e of
    an E-epoch training, finished as an e-epoch training finishes, is the e-epoch model (same order
    of batches, same optimizer state; tests/test_float_snapshots.py checks the bytes), so a later
    run for e epochs loads it."""
    folder = entry(cache_dir, identity)
    if folder.is_dir():
        return
    with atomic_folder(folder, existing="keep") as work:
        save(make(), work)
        write_json_atomic(work / IDENTITY_FILE, _keyed(identity))


def file_identity(path: str) -> dict[str, Any]:
    """A user's file (model or data set) is keyed by its path, size and modification time: it can
    change in place under the same name."""
    p = Path(path)
    if not p.exists():
        return {"path": path}
    st = p.stat()
    return {"path": str(p.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns}
