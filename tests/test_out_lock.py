"""One OUT, one writer: a second compare or search on an OUT another live process works on refuses in
one line naming it; a lock left by a dead process is taken over; no cell runs twice."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.cli import main
from condition.compare.out_lock import LOCK_NAME, hold_out
from condition.errors import OutBusyError

from conftest import needs_fashion_mnist  # noqa: E402

CONDITION = [sys.executable, "-c", "from condition.cli import entry_point; entry_point()"]
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


TWO = """
frontends = ["tf"]
train_limit = 300
eval_limit = 100
[[chains]]
steps = [{technique = "post-training-quant", calibration_images = 20}]
[[chains]]
steps = [{technique = "prune", sparsity = 0.9}]
"""


@pytest.mark.slow
@needs_fashion_mnist
def test_two_compares_on_one_out_run_each_cell_once(tmp_path):
    """The issue's case: a second `compare --out X` started a few seconds after the first. It refuses
    in one line naming the first; the first runs each of its N cells once and leaves whole folders."""
    recipe = tmp_path / "two.toml"
    recipe.write_text(TWO)
    out = tmp_path / "out"
    env = {**os.environ, "RAY_ADDRESS": ""}
    cmd = [*CONDITION, "compare", "--recipe", str(recipe), "--out", str(out)]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        assert first.poll() is None
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        f_out, f_err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
    assert second.returncode == 1 and "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines()[-1] == (
        f"condition: error: {out} is in use by pid {first.pid} on {os.uname().nodename}, started "
        + second.stderr.split("started ", 1)[1].split(": ", 1)[0]
        + f": condition compare --recipe {recipe} --out {out} (wait for it to end, or give another --out)")
    assert first.returncode == 0, f_err[-2000:]
    assert f_err.count(": ok in ") == 2
    logs = (out / "logs" / "tf.log").read_text()
    assert logs.count("=== tf/mlp/") == 2  # two cell runs for two cells, by the log every run appends to
    records = [MetricsRecord.read(p) for p in out.rglob(RECORD_NAME) if ".float-cache" not in str(p)]
    assert len(records) == 2 and {r.status for r in records} == {"ok"}
    for r in records:  # whole folders: the artifact and Vela's output beside each record
        folder = out / "tf" / "mlp" / f"{r.techniques[-1]}-{r.config_hash}"
        assert (folder / "model_int8.tflite").is_file() and list(folder.rglob("*_vela.tflite")), folder
    assert not [p for p in out.rglob(".*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]  # no partial folder
    assert (out / LOCK_NAME).read_text() == ""
