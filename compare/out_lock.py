"""One OUT, one writer: `compare` and `search` hold an OS lock on OUT/.lock while they work.

A second command on the same OUT refuses at once with one line naming the holder (pid, host,
command, start time), rather than waiting: two runs of one matrix would train the same cells twice
and the later one would replace the earlier one's run folders. The lock is `fcntl.flock` on
OUT/.lock, so it goes away with its process however that ends (Ctrl-C, kill -9, a crash): a lock
left by a dead process is simply taken. The holder's description is written into the lock file for
the refusal message; nothing reads it to decide anything.

    with hold_out(out, "condition compare --quick"):
        ...  # the only writer of OUT
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import json
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from condition.errors import OutBusyError

LOCK_NAME = ".lock"


@dataclass(frozen=True)
class Holder:
    """Who holds an OUT: enough to find the process and decide whether to wait for it."""

    pid: int
    host: str
    command: str
    started: str  # ISO 8601, UTC

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.started}: {self.command}"


def this_process(command: str | None = None) -> Holder:
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return Holder(os.getpid(), socket.gethostname(), command or " ".join(["condition", *sys.argv[1:]]), started)


@contextlib.contextmanager
def hold_out(out: str | Path, command: str | None = None) -> Iterator[Holder]:
    """Hold OUT's lock for the block (OUT is created if missing); OutBusyError if another live
    process holds it. Re-entrant within one process (a search runs the compare runner inside)."""
    out = Path(out)
    key = str(out.resolve())
    if key in _held:
        yield _held[key]
        return
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # never O_TRUNC: the holder's description stays readable
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutBusyError(str(out), _holder_text(path)) from None
        holder = this_process(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(asdict(holder)) + "\n").encode(), 0)
        _held[key] = holder
        try:
            yield holder
        finally:
            del _held[key]
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)  # released: no stale description left behind
    finally:
        os.close(fd)  # closing the descriptor releases the flock


_held: dict[str, Holder] = {}


def _holder_text(path: Path, attempts: int = 10) -> str:
    """The holder's description; it may still be writing it (it locks first, then writes)."""
    for _ in range(attempts):
        try:
            return Holder(**json.loads(path.read_text())).describe()
        except (OSError, ValueError, TypeError):
            time.sleep(0.05)
    return "another process (it has not said which yet)"
