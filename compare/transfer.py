"""Folders as bytes between a Ray worker and the driver, so a cluster needs no shared file system.

A worker runs a cell in its own private OUT and sends back `pack(out, [run folder, new float-cache
entries])`: one uncompressed tar in memory per folder, keyed by its path relative to OUT. The driver
`install`s each under its real OUT through `atomic_folder`, so OUT never holds half a folder: a run
folder replaces an older one whole, a cache entry another worker stored first is kept.

    units = pack(private_out, ["tf/mlp/prune-1a2b3c", "tf/.float-cache/9f8e7d"])
    install(out, units, keep=lambda rel: "/.float-cache/" in f"/{rel}")
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from condition.backend.atomic import atomic_folder
from condition.errors import ArtifactError

Units = dict[str, bytes]  # folder path relative to OUT (posix) → tar of its contents


def pack(root: str | Path, folders: Iterable[str | Path]) -> Units:
    """Tar each existing folder under `root` (paths inside the tar relative to that folder)."""
    root = Path(root)
    units: Units = {}
    for rel in folders:
        folder = root / rel
        if not folder.is_dir():
            continue
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            for path in sorted(folder.rglob("*")):
                tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False)
        units[PurePosixPath(Path(rel).as_posix()).as_posix()] = buffer.getvalue()
    return units


def install(out: str | Path, units: Units, keep: Callable[[str], bool] = lambda rel: False) -> list[Path]:
    """Write every unit under `out` atomically; `keep(rel)` true = an existing folder stays as it is."""
    out = Path(out)
    written = []
    for rel, data in units.items():
        parts = PurePosixPath(rel).parts
        if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
            raise ArtifactError(rel, "a worker sent a folder outside OUT")
        dest = out.joinpath(*parts)
        with atomic_folder(dest, existing="keep" if keep(rel) else "replace") as work:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
                tar.extractall(work, filter="data")  # no absolute paths, links out of the folder or devices
        written.append(dest)
    return written


def float_cache_folders(root: str | Path) -> list[str]:
    """Every float-cache entry under a private OUT (OUT/<frontend>/.float-cache/<key>), relative."""
    root = Path(root)
    return sorted(p.relative_to(root).as_posix() for p in root.glob("*/.float-cache/*") if p.is_dir() and not p.name.startswith("."))


def is_cache(rel: str) -> bool:
    return "/.float-cache/" in f"/{rel}"
