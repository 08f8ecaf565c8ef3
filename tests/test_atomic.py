"""The one atomic writer (backend/atomic.py) and the float cache both frontends share
(condition/float_cache.py); framework-free, so these run in milliseconds."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from condition.backend.atomic import atomic_folder, write_bytes_atomic, write_json_atomic, write_text_atomic
from condition.float_cache import IDENTITY_FILE, cached
from condition.threads import COMPUTE_THREADS


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_file_written_whole_with_the_umask_mode(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "sub" / "report.md", "new\n")
    assert path.read_text() == "new\n" and _entries(tmp_path / "sub") == ["report.md"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as a plain write, not mkstemp's 0600
    write_json_atomic(path, {"a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2]} and path.read_text().endswith("]\n}\n")


def test_failed_file_write_keeps_the_old_file(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "results.json", "old")
    with pytest.raises(TypeError):
        write_bytes_atomic(path, "not bytes")  # fails after the temporary file was created
    assert path.read_text() == "old" and _entries(tmp_path) == ["results.json"]


def test_folder_appears_only_on_success_and_replaces_the_old_one_whole(tmp_path: Path) -> None:
    dest = tmp_path / "run"
    with atomic_folder(dest) as work:
        assert work.parent == tmp_path and work.name.startswith(".run.partial-")
        assert work.name.rsplit("-", 1)[-1] == str(os.getpid())  # compare removes those of dead processes
        (work / "old.txt").write_text("1")
        assert not dest.exists()
    with atomic_folder(dest) as work:
        (work / "new.txt").write_text("2")
    assert _entries(dest) == ["new.txt"] and _entries(tmp_path) == ["run"]
    with pytest.raises(RuntimeError), atomic_folder(dest) as work:
        (work / "half.txt").write_text("3")
        raise RuntimeError("step failed")
    assert _entries(dest) == ["new.txt"] and _entries(tmp_path) == ["run"]


def test_keep_and_merge(tmp_path: Path) -> None:
    dest = tmp_path / "entry"
    for text in ("first", "second"):  # a cache entry: the first stored stays
        with atomic_folder(dest, existing="keep") as work:
            (work / "model").write_text(text)
    assert (dest / "model").read_text() == "first" and _entries(tmp_path) == ["entry"]
    out = tmp_path / "vela"
    out.mkdir()
    (out / "vela.log").write_text("log")
    with atomic_folder(out, existing="merge") as work:  # outputs beside a log already there
        (work / "model_vela.tflite").write_text("x")
    assert _entries(out) == ["model_vela.tflite", "vela.log"] and _entries(tmp_path) == ["entry", "vela"]


def test_float_cache_trains_once_per_identity_and_retrains_a_damaged_entry(tmp_path: Path) -> None:
    trained: list[int] = []

    def train() -> dict[str, int]:
        trained.append(1)
        return {"w": len(trained)}

    def save(model: dict[str, int], folder: Path) -> None:
        (folder / "model.json").write_text(json.dumps(model))

    def load(folder: Path) -> dict[str, int]:
        return json.loads((folder / "model.json").read_text())

    identity = {"model": "mlp", "epochs": 1, "seed": 0}
    assert cached(tmp_path, identity, train, save, load) == ({"w": 1}, False)
    assert cached(tmp_path, identity, train, save, load) == ({"w": 1}, True)
    (entry,) = [p for p in tmp_path.iterdir()]
    assert json.loads((entry / IDENTITY_FILE).read_text()) == {**identity, "compute_threads": COMPUTE_THREADS}
    assert cached(tmp_path, {**identity, "seed": 1}, train, save, load) == ({"w": 2}, False)  # another key
    (entry / "model.json").write_text("{trunc")
    assert cached(tmp_path, identity, train, save, load) == ({"w": 3}, False)  # damaged: retrained, replaced
    assert cached(tmp_path, identity, train, save, load) == ({"w": 3}, True)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
