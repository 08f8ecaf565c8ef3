"""The one way condition writes a file or a folder: into a private temporary name beside the
destination, renamed into place only when complete, so a crash, a Ctrl-C or a concurrent reader
never sees half a file, half a run folder or a mix of an old and a new one.

    write_text_atomic(out / "report.md", text)
    with atomic_folder(run_dir) as work:      # work = OUT/.../.<name>.partial-<pid>
        (work / "model.tflite").write_bytes(b)
    # run_dir now holds the finished folder (an older one was replaced whole)

Temporary folders end in `-<pid>`, so `compare` can remove those of processes that are gone.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator, Literal

# What to do when the destination folder exists: replace it whole, keep it (a cache entry another
# process stored first is as good as ours), or merge our files into it (outputs beside a log).
Existing = Literal["replace", "keep", "merge"]


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to a temporary file in the same folder, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _private_name(path, "tmp-")
    f = open(tmp, "xb")  # created with the umask's mode, as a plain write would (mkstemp: owner only)
    try:
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Indented JSON with a final newline (values JSON does not know are written as str)."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def new_work_folder(dest: str | Path) -> Path:
    """A fresh private folder beside `dest` (same file system, so the final rename is atomic)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = _folder_name(dest, "partial")
    shutil.rmtree(work, ignore_errors=True)  # a leftover of this process (pids are reused)
    work.mkdir()  # the umask's mode, as the finished folder should have (mkdtemp: owner only)
    return work


def publish_folder(work: str | Path, dest: str | Path, existing: Existing = "replace") -> Path:
    """Move the finished folder `work` to `dest`; see `Existing` for a `dest` that is already there."""
    work, dest = Path(work), Path(dest)
    if existing == "merge" and dest.is_dir():
        for p in work.iterdir():
            os.replace(p, dest / p.name)
        work.rmdir()
    elif not dest.exists():
        try:
            os.replace(work, dest)
        except OSError:  # another process published `dest` between our check and our rename
            if existing == "replace":
                raise
    elif existing == "replace":
        old = _folder_name(dest, "old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)  # two renames: a reader sees the old folder, none, or the new one, never a mix
        os.replace(work, dest)
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _private_name(dest: Path, kind: str) -> Path:
    """`.<name>.<kind><random>-<pid>` beside `dest`: hidden, unique, and its owner's pid last."""
    return dest.parent / f".{dest.name}.{kind}{uuid.uuid4().hex[:8]}-{os.getpid()}"


def _folder_name(dest: Path, kind: str) -> Path:
    """`.<name>.<kind>-<pid>`: one per destination and process, no random part, because the path
    can end up inside an artifact (ExecuTorch's .pte keeps the Vela/TOSA dump folder it was
    lowered with) and a longer name would change the artifact's size."""
    return dest.parent / f".{dest.name}.{kind}-{os.getpid()}"


@contextlib.contextmanager
def atomic_folder(dest: str | Path, existing: Existing = "replace") -> Iterator[Path]:
    """Yield a private temporary folder beside `dest`; on success it becomes `dest`, on an
    exception it is removed and `dest` is left as it was."""
    work = new_work_folder(dest)
    try:
        yield work
        publish_folder(work, dest, existing)
    finally:
        shutil.rmtree(work, ignore_errors=True)
