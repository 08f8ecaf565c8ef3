"""Several Ray nodes: a local cluster of two `ray start` nodes (each its own temp dir, 1 CPU, its own
cell folder; Ray 2.60's default token auth), `compare` and `search` run on it from a driver that
connects with `--address` (a second compare on the same OUT, started 4 s later, refuses). Cells run on both nodes (the node id of each is in OUT/logs/<frontend>.log),
the run folders are byte for byte the embedded run's, and no process of the cluster writes into OUT:
every node's Python processes carry an audit hook (sys.addaudithook, via sitecustomize) that logs
each file they open for writing, create, rename or remove under OUT or under the node's cell folder."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.cli import main

from conftest import needs_fashion_mnist  # noqa: E402
from test_compare_ray import CONDITION, RAY, _comparable, _digests, _free_port, _processes_mentioning, _stop, user_env  # noqa: E402

pytestmark = [needs_fashion_mnist, pytest.mark.slow]

TWO_CELLS = """
frontends = ["tf", "torch"]
train_limit = 300
eval_limit = 100
[[chains]]
steps = [{technique = "post-training-quant", calibration_images = 20}]
"""

AUDIT_HOOK = '''
import os
import sys

_LOG = os.environ.get("CONDITION_AUDIT_LOG")
_WATCHED = tuple(p for p in os.environ.get("CONDITION_AUDIT_PATHS", "").split(os.pathsep) if p)
_CHANGES = {"os.mkdir", "os.remove", "os.rmdir", "os.rename", "os.symlink", "os.link", "os.truncate", "shutil.rmtree",
            "shutil.copyfile", "shutil.copytree", "shutil.move"}


def _paths(event, args):
    if event == "open":
        path, mode, flags = args
        if mode is not None:
            return [path] if any(c in mode for c in "wax+") else []
        return [path] if isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) else []
    if event in _CHANGES:
        return [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
    return []


def _hook(event, args):
    if event != "open" and event not in _CHANGES:
        return
    for path in _paths(event, args):
        if isinstance(path, int):
            continue
        text = os.path.abspath(os.fsdecode(path))
        if text.startswith(_WATCHED):
            with open(_LOG, "a") as log:  # not watched itself: no recursion
                log.write(f"{os.getpid()} {event} {text}\\n")


if _LOG and _WATCHED:
    sys.addaudithook(_hook)
'''


def _start_node(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(RAY), "start", *args, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                           "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def _cell_nodes(out: Path) -> dict[str, str]:
    """run folder → the Ray node id it ran on, from the header the driver writes per cell."""
    found = {}
    for log in (out / "logs").glob("*.log"):
        for folder, node in re.findall(r"^=== (\S+): \w+ in [\d.]+ s on node (\w+) \(pid \d+\) ===$", log.read_text(), re.M):
            found[folder] = node
    return found


@pytest.mark.usefixtures("shared_ray")  # the embedded run, in this process
def test_compare_and_search_on_two_nodes_match_the_embedded_run_and_only_the_driver_writes_out(tmp_path):
    recipe = tmp_path / "two.toml"
    recipe.write_text(TWO_CELLS)
    out, searched = tmp_path / "cluster", tmp_path / "search"
    port = _free_port()
    env = user_env(tmp_path / "home")
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    hook = tmp_path / "audit"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    tag = f"/tmp/cn{os.getpid()}"  # Ray's socket paths must stay short
    nodes = {}
    for name in ("a", "b"):
        cells = tmp_path / f"cells-{name}"
        cells.mkdir()
        nodes[name] = {**env, "PYTHONPATH": str(hook), "CONDITION_CELL_TMP": str(cells),
                       "CONDITION_AUDIT_LOG": str(tmp_path / f"audit-{name}.log"),
                       "CONDITION_AUDIT_PATHS": os.pathsep.join([str(out), str(searched), str(cells)])}
    try:
        head = _start_node(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", f"{tag}a"], nodes["a"])
        assert "Token authentication is enabled" in head
        # Ray's own `ray start --address` does not turn token mode on for an explicit address: a node joins with it set
        _start_node(["--address", f"127.0.0.1:{port}", "--temp-dir", f"{tag}b"], {**nodes["b"], "RAY_AUTH_MODE": "token"})

        # The two compares on one OUT, the second 4 s after the first: it refuses, naming the first
        command = [*CONDITION, "compare", "--recipe", str(recipe), "--address", f"127.0.0.1:{port}", "--out", str(out)]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(4)
            assert first.poll() is None
            second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            _, first_err = first.communicate(timeout=900)
        finally:
            if first.poll() is None:
                first.kill()
        assert second.returncode == 1 and "Traceback" not in second.stderr
        refusal = second.stderr.strip().splitlines()[-1]
        assert refusal.startswith(f"condition: error: {out} is in use by pid {first.pid} on {os.uname().nodename}, started ")
        assert refusal.endswith(f": {' '.join(['condition', *command[3:]])} (wait for it to end, or give another --out)")
        assert first.returncode == 0, first_err[-3000:]
        assert "2 worker(s) × 1 thread(s)" in first_err and first_err.count(": ok in ") == 2
        ran_on = _cell_nodes(out)
        assert len(ran_on) == 2 and len(set(ran_on.values())) == 2, ran_on  # one cell on each node
        assert sum(log.read_text().count("\n=== ") + log.read_text().startswith("=== ")
                   for log in (out / "logs").glob("*.log")) == 2  # 2 cell runs for 2 cells

        search = subprocess.run([*CONDITION, "search", "--frontend", "tf", "--trials", "1", "--train-limit", "300",
                                 "--eval-limit", "100", "--address", f"127.0.0.1:{port}", "--out", str(searched)],
                                env=env, capture_output=True, text=True, timeout=900)
        assert search.returncode == 0, search.stderr[-3000:]
        assert f"running on Ray at 127.0.0.1:{port}" in search.stderr
        trials = json.loads((searched / "search.json").read_text())["trials"]
        assert len(trials) == 1 and trials[0]["status"] in ("ok", "stopped"), trials
        assert set(_cell_nodes(searched).values()) <= set(ran_on.values())  # the same two nodes
    finally:
        for name in ("a", "b"):
            _stop(f"{tag}{name}/")
    assert not _processes_mentioning(f"{tag}a/") and not _processes_mentioning(f"{tag}b/")

    writes = {name: (tmp_path / f"audit-{name}.log").read_text().splitlines() if (tmp_path / f"audit-{name}.log").is_file() else []
              for name in nodes}
    for name, lines in writes.items():
        assert any(f"cells-{name}/condition-cells/" in line for line in lines), name  # the hook saw the node's own cell work
    into_out = [line for lines in writes.values() for line in lines if f" {out}/" in line or line.endswith(f" {out}")]
    assert into_out == []  # compare: OUT written by the driver alone

    embedded = tmp_path / "embedded"
    assert main(["compare", "--recipe", str(recipe), "--out", str(embedded)]) == 0
    for rel in ran_on:
        a, b = out / rel, embedded / rel
        assert _digests(a) == _digests(b) and any(n.endswith(("_vela.tflite", ".tosa")) for n in _digests(a)), rel
        assert _comparable(MetricsRecord.read(a)) == _comparable(MetricsRecord.read(b)), rel
        assert (a / RECORD_NAME).is_file()
