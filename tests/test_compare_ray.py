"""`condition compare` on Ray: the quick matrix and a search on a real local cluster of two `ray start` nodes
with Ray 2.60's default token auth (address passed, cluster left running for its owner), and a compare killed with Ctrl-C that leaves
no partial folder and no Ray process, then resumes without redoing the finished cell."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.cli import main

from conftest import needs_fashion_mnist  # noqa: E402

pytestmark = needs_fashion_mnist

RAY = Path(sys.executable).with_name("ray")
CONDITION = [sys.executable, "-c", "from condition.cli import entry_point; entry_point()"]
TINY = """
frontends = ["tf", "torch"]
train_limit = 300
eval_limit = 100
[[chains]]
steps = [{technique = "post-training-quant", calibration_images = 20}]
[[chains]]
steps = [{technique = "prune", sparsity = 0.9, fine_tune_epochs = 1}]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(out: Path) -> dict[str, MetricsRecord]:
    return {str(p.parent.relative_to(out)): MetricsRecord.read(p) for p in out.rglob(RECORD_NAME)
            if not any(part.startswith(".") for part in p.relative_to(out).parts)}


def _debris(out: Path) -> list[str]:
    return [str(p) for p in out.rglob(".*") if p.is_dir() and p.name.rsplit("-", 1)[-1].isdigit()]


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
    return [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]


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
PRUNE_CELLS = """
frontends = ["tf", "torch"]
train_limit = 2000
eval_limit = 300
[[chains]]
steps = [{technique = "prune", sparsity = 0.95, fine_tune_epochs = 1}]
"""


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")  # the embedded run of the prune cells: in this process, warm for the next test
def test_quick_compare_on_two_ray_nodes_as_users_start_them(tmp_path, capsys):
    """The issue's commands on a cluster of two `ray start` nodes (each its own temp dir and cell folder,
    1 CPU), with Ray 2.60's default token auth and nothing set in the shell:
    - without the token, compare refuses in one line saying what to set;
    - `compare --quick --address` runs the 12 cells on both nodes (each cell's node id is in
      OUT/logs/<frontend>.log), while a second compare on the same OUT, started 4 s later, refuses naming
      the first: 12 cell runs for 12 cells;
    - no process of the cluster writes into OUT: every node's Python processes carry an audit hook
      (sys.addaudithook, via sitecustomize) logging each file they write, create, rename or remove under
      OUT or the node's cell folder, and it does see the cells' work in their private folders;
    - each frontend's prune cell is byte for byte (.tflite, Vela's .tflite and CSVs, .pte, TOSA) and record
      for record (but wall times and the float-cache note) the cell of an embedded-Ray compare, and (torch only,
      the longer chain of tools) the cell run alone in a fresh process with the framework's default threads
      (tf's alone run, 12 s on a quiet machine, is left out to keep the suite within its 5 minutes);
    - `search` runs on the same cluster."""
    port = _free_port()
    tag = f"/tmp/crt{os.getpid()}"  # Ray's socket paths must stay short
    # Ray 2.60's defaults, as a user meets them: nothing set, and a token in ~/.ray/auth_token (an embedded
    # Ray, e.g. an earlier `condition compare`, writes one there), so `ray start` turns token auth on.
    # HOME is a folder of this test: the machine's own ~/.ray plays no part.
    env = user_env(tmp_path / "home")
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    out, searched = tmp_path / "quick", tmp_path / "search"
    hook = tmp_path / "audit"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(AUDIT_HOOK)
    nodes = {}
    for name in ("a", "b"):
        (tmp_path / f"cells-{name}").mkdir()
        nodes[name] = {**env, "PYTHONPATH": str(hook), "CONDITION_CELL_TMP": str(tmp_path / f"cells-{name}"),
                       "CONDITION_AUDIT_LOG": str(tmp_path / f"audit-{name}.log"),
                       "CONDITION_AUDIT_PATHS": os.pathsep.join([str(out), str(searched), str(tmp_path / f"cells-{name}")])}
    compare = [*CONDITION, "compare", "--quick", "--address", f"127.0.0.1:{port}", "--out", str(out)]
    try:
        head = _start_node(["--head", "--port", str(port), "--include-dashboard=false", "--temp-dir", f"{tag}a"], nodes["a"])
        assert "Token authentication is enabled" in head
        # Ray's own `ray start --address` does not turn token mode on for an explicit address: a node joins with it set
        _start_node(["--address", f"127.0.0.1:{port}", "--temp-dir", f"{tag}b"], {**nodes["b"], "RAY_AUTH_MODE": "token"})

        # Without a token the cluster refuses this driver: one line saying what to set, Ray's retries in
        # OUT/logs (RAY_NUM_REDIS_GET_RETRIES only shortens Ray's 20 s of retries for the test).
        refused = subprocess.run(compare, env={**user_env(tmp_path / "other-home"), "RAY_NUM_REDIS_GET_RETRIES": "3"},
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr and "gcs_client" not in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith(
            f"condition: error: Ray cluster at 127.0.0.1:{port}: the cluster wants Ray's authentication token and none was "
            "found here: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH")
        assert "InvalidAuthToken" in (out / "logs" / "ray-driver.log").read_text()

        first = subprocess.Popen(compare, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(4)
            assert first.poll() is None
            second = subprocess.run(compare, env=env, capture_output=True, text=True, timeout=120)
            _, err = first.communicate(timeout=900)
        finally:
            if first.poll() is None:
                first.kill()
        assert second.returncode == 1 and "Traceback" not in second.stderr
        refusal = second.stderr.strip().splitlines()[-1]
        assert refusal.startswith(f"condition: error: {out} is in use by pid {first.pid} on {os.uname().nodename}, started ")
        assert refusal.endswith(f": condition {' '.join(compare[3:])} (wait for it to end, or give another --out)")
        assert first.returncode == 0, err[-3000:] + "".join(p.read_text()[-3000:] for p in out.rglob("error.log"))
        assert f"Ray at 127.0.0.1:{port}" in err and "12 cells" in err and "0 already done" in err
        assert "gcs_client" not in err and "InvalidAuthToken" not in err
        assert err.count(": ok in ") == 12
        ran_on = _cell_nodes(out)
        assert len(ran_on) == 12 and len(set(ran_on.values())) == 2, ran_on  # 12 cell runs, on both nodes
        records = _records(out)
        assert len(records) == 12 and {r.status for r in records.values()} == {"ok"}
        assert not any(r.problems for r in records.values())
        assert not (out / "logs" / "ray").exists()  # a cluster's logs stay with the cluster
        assert (out / "logs" / "tf.log").is_file() and (out / "logs" / "torch.log").is_file()  # sent back by the workers
        assert _debris(out) == []
        assert _processes_mentioning(f"{tag}a/")  # the command disconnected and left the cluster running
        for name in ("report.md", "report.html", "results.csv", "results.json", "compare.json"):
            assert (out / name).is_file(), name
        rows = list(csv.DictReader((out / "results.csv").open()))
        cells = [r for r in rows if r["chain"] != "float"]
        assert len(cells) == 12 and {r["status"] for r in cells} == {"ok"} and {r["frontend"] for r in cells} == {"tf", "torch"}
        assert all(int(r["vela_npu_cycles"]) > 0 and int(r["vela_encoded_weight_bytes"]) > 0 for r in cells)
        assert all(0.0 < float(r["accuracy"]) <= 1.0 for r in rows)
        pruned = [r for r in cells if r["technique"] == "prune 95 %"]
        assert len(pruned) == 2
        assert all(float(r["weight_sparsity"]) > 0.9 and float(r["encoded_weight_bytes_vs_baseline"]) < 0.2 for r in pruned)

        search = subprocess.run([*CONDITION, "search", "--frontend", "tf", "--trials", "1", "--train-limit", "300",
                                 "--eval-limit", "100", "--address", f"127.0.0.1:{port}", "--out", str(searched)],
                                env=env, capture_output=True, text=True, timeout=900)
        assert search.returncode == 0, search.stderr[-3000:]
        assert search.stderr.count(f"on Ray at 127.0.0.1:{port}") == 2  # the search and its reference cells
        trials = json.loads((searched / "search.json").read_text())["trials"]
        assert len(trials) == 1 and trials[0]["status"] == "ok", trials
        assert set(_cell_nodes(searched).values()) <= set(ran_on.values())  # the same two nodes
        # (a resumed compare redoing nothing: test_killed_compare_leaves_nothing_behind_and_resumes, embedded)
    finally:
        _stop(f"{tag}a/", f"{tag}b/")
    assert _processes_mentioning(f"{tag}a/") == [] and _processes_mentioning(f"{tag}b/") == []

    writes = {name: (tmp_path / f"audit-{name}.log").read_text().splitlines() for name in nodes}
    for name, lines in writes.items():
        assert any(f"cells-{name}/condition-cells/" in line for line in lines), name  # the hook saw the node's cell work
    assert [line for lines in writes.values() for line in lines if f" {out}/" in line or line.endswith(f" {out}")] == []

    # The prune 95 % cells again: on an embedded Ray (a compare of just them), and torch's alone in a fresh
    # process with the framework's default threads. Same hash, same bytes, same record on each.
    recipe = tmp_path / "prune.toml"
    recipe.write_text(PRUNE_CELLS)
    embedded, alone = tmp_path / "embedded", tmp_path / "alone"
    shell = {k: v for k, v in env.items() if k not in THREAD_VARS}  # as from a shell: default threads
    alone_run = subprocess.Popen([*CONDITION, "torch", "prune", "--sparsity", "0.95", "--train-limit", "2000", "--eval-limit",
                                  "300", "--fine-tune-epochs", "1", "--out", str(alone)],
                                 env=shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    capsys.readouterr()
    assert main(["compare", "--recipe", str(recipe), "--out", str(embedded)]) == 0, capsys.readouterr().err[-3000:]
    assert "embedded Ray" in capsys.readouterr().err
    output = alone_run.communicate(timeout=900)[0]
    assert alone_run.returncode == 0, output[-2000:]
    for fw, artifact in (("tf", "model_int8.tflite"), ("torch", "model.pte")):
        cluster = _prune_folder(out, fw, pruned_to=0.95)
        digests = _digests(cluster)
        assert artifact in digests and any(name.endswith((".tosa", "_vela.tflite")) for name in digests)
        for other in (_prune_folder(embedded, fw), *([_prune_folder(alone, fw)] if fw == "torch" else [])):
            assert other.name == cluster.name  # the same configuration hash
            assert _digests(other) == digests, (fw, other)
            assert _comparable(MetricsRecord.read(other)) == _comparable(MetricsRecord.read(cluster)), (fw, other)


def _start_node(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([str(RAY), "start", *args, "--num-cpus", "1", "--node-ip-address", "127.0.0.1",
                           "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout + done.stderr


def _cell_nodes(out: Path) -> dict[str, str]:
    """run folder → the Ray node id it ran on, from the header the driver writes per cell run."""
    found: dict[str, str] = {}
    for log in (out / "logs").glob("*.log"):
        for folder, node in re.findall(r"^=== (\S+): \w+ in [\d.]+ s on node (\w+) \(pid \d+\) ===$", log.read_text(), re.M):
            assert folder not in found  # no cell ran twice
            found[folder] = node
    return found


def user_env(home: Path) -> dict[str, str]:
    """A shell of a user whose HOME is `home`: no Ray address, no auth mode, token or token path set."""
    home.mkdir(parents=True, exist_ok=True)
    drop = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "HOME": str(home)}


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def _prune_folder(out: Path, frontend: str, pruned_to: float | None = None) -> Path:
    """The unstructured prune cell of `frontend` (at `pruned_to` when the folder holds several)."""
    folders = [p for p in (out / frontend / "mlp").glob("prune-*") if p.is_dir()]
    if pruned_to is not None:
        folders = [p for p in folders if (o := MetricsRecord.read(p).options["prune"])["sparsity"] == pruned_to
                   and o["structure"] == "unstructured"]
    (folder,) = folders
    return folder


def _digests(folder: Path) -> dict[str, str]:
    """md5 of every file of a run folder but its logs and record."""
    return {str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix != ".log" and p.name != RECORD_NAME}


def _comparable(record: MetricsRecord) -> dict:
    d = record.to_dict()
    for key in ("step_seconds", "created"):
        d.pop(key)
    d["notes"] = [n for n in d["notes"] if "float cache" not in n]
    return d


def _stop(*texts: str) -> None:
    """`ray stop` would stop every Ray on the machine (other users' too): end only this cluster's processes, every
    node at once (some of a node's processes wait out a SIGTERM: 20 s each node was 40 s of the test doing nothing)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        for pid in [p for text in texts for p in _processes_mentioning(text)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while any(_processes_mentioning(text) for text in texts) and time.monotonic() < deadline:
            time.sleep(0.2)


def _ray_dirs(where: Path) -> set[Path]:
    return set(where.glob("condition-ray-*"))


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():  # our own process (pytest) never mentions it
        if not proc.name.isdigit():
            continue
        try:
            if text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")  # for the in-process resume
def test_killed_compare_leaves_nothing_behind_and_resumes(tmp_path, capsys):
    recipe = tmp_path / "tiny.toml"
    two_four = '[[chains]]\nsteps = [{technique = "prune", sparsity = 0.5, structure = "2:4"}]\n'
    recipe.write_text(TINY.replace('["tf", "torch"]', '["tf"]') + two_four)
    out = tmp_path / "out"
    # A temp folder of its own (short: Ray's socket paths must stay short), so the embedded Ray found
    # there is this command's, whatever else runs on the machine (other tests in parallel).
    private_tmp = Path(tempfile.mkdtemp(prefix="ck-", dir="/tmp"))
    cmd = [*CONDITION, "compare", "--recipe", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "RAY_ADDRESS": "", "TMPDIR": str(private_tmp)})
    deadline = time.monotonic() + 600
    ray_dir = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            ray_dir = ray_dir or next(iter(_ray_dirs(private_tmp)), None)
            if any(r.status == "ok" for r in _records(out).values()):
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err.decode()[-2000:]
    assert "condition: aborted" in err.decode() or "condition: interrupted" in err.decode()
    finished = {k: r for k, r in _records(out).items() if r.status == "ok"}
    assert 1 <= len(finished) < 3
    assert _debris(out) == []  # no partial run folder, no half-installed one
    assert ray_dir is not None and not ray_dir.exists() and _processes_mentioning(ray_dir.name) == []
    shutil.rmtree(private_tmp, ignore_errors=True)
    assert (out / "logs" / "ray").is_dir()  # the embedded Ray's logs were kept
    stamps = {k: (out / k / RECORD_NAME).stat().st_mtime_ns for k in finished}

    assert main(["compare", "--recipe", str(recipe), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{len(finished)} already done" in err and err.count(": done before") == len(finished)
    assert {k: (out / k / RECORD_NAME).stat().st_mtime_ns for k in finished} == stamps  # not redone
    assert len([r for r in _records(out).values() if r.status == "ok"]) == 3
    manifest = json.loads((out / "compare.json").read_text())
    assert len(manifest["cells"]) == 3
