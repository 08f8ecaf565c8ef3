"""Keep what compilers print out of the user's terminal (and out of --json output).

Vela, its C++ core (regor, for U85), the TFLite converter and the TOSA tools print both from C++
(straight to file descriptors 1 and 2) and from Python (sys.stdout, which is not fd 1 under
pytest, click's test runner or an embedding caller). `captured_output` sends both to a log file
kept beside the artifact, so a failure can quote it.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def captured_output(log_path: str | Path, append: bool = True) -> Iterator[None]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    mode = "a" if append else "w"
    with open(log_path, mode + "b") as raw, open(log_path, "a", buffering=1) as text:
        os.dup2(raw.fileno(), 1)
        os.dup2(raw.fileno(), 2)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
