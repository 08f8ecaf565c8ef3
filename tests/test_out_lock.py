"""One OUT, one writer: a second compare or search on an OUT another live process works on refuses in
one line naming it; a lock left by a dead process is taken over. Two real compares on one OUT, 4 s apart
(each cell run once): tests/test_compare_ray.py."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from condition.cli import main
from condition.compare.out_lock import LOCK_NAME, hold_out
from condition.errors import OutBusyError


HOLD = "import sys, time; from condition.compare.out_lock import hold_out\nwith hold_out(sys.argv[1], 'condition compare --out X'):\n" \
       "    print('held', flush=True); time.sleep(120)"


def _holder(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_is_named_and_a_dead_one_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    proc = _holder(out)
    try:
        with pytest.raises(OutBusyError) as err:
            with hold_out(out):
                pass
        text = str(err.value)
        assert f"pid {proc.pid} on " in text and "condition compare --out X" in text and "started 20" in text
        assert main(["search", "--out", str(out), "--trials", "1"]) == 1  # refused before any Ray starts
        lines = capsys.readouterr().err.strip().splitlines()
        assert lines[-1] == f"condition: error: {text}" and "Traceback" not in "".join(lines)
    finally:
        proc.send_signal(signal.SIGKILL)  # dies holding the lock: no clean-up ran
        proc.wait()
    with hold_out(out) as me:  # the kernel dropped the dead process's flock
        assert me.pid == os.getpid() and str(os.getpid()) in (out / LOCK_NAME).read_text()
        with hold_out(out):  # re-entrant in one process (a search runs the compare runner inside)
            pass
    assert (out / LOCK_NAME).read_text() == ""  # released: no stale description
