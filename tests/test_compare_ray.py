"""`condition compare` on Ray: the quick matrix on a real local cluster started with `ray start --head` and
Ray 2.60's default token auth (address passed, cluster left running for its owner), and a compare killed with Ctrl-C that leaves
no partial folder and no Ray process, then resumes without redoing the finished cell."""
from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
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
steps = [{technique = "prune", sparsity = 0.9}]
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


@pytest.mark.slow
def test_quick_compare_on_a_local_ray_cluster_resumes_and_gives_the_bytes_of_a_run_alone(tmp_path):
    """`compare --quick` on a cluster started here (2 CPUs: two cells at once), then each frontend's
    prune cell run alone in a fresh process with the frameworks' default threads: the same
    configuration hash, byte-identical artifacts (.tflite, Vela's .tflite and CSVs, .pte, TOSA) and
    the same record but for wall times and the float-cache note. Then the compare again: nothing redone."""
    port = _free_port()
    temp = Path("/tmp") / f"crt-{os.getpid()}"  # Ray's socket paths must stay short
    # Ray 2.60's defaults, as a user meets them: nothing set, and a token in ~/.ray/auth_token (an embedded
    # Ray, e.g. an earlier `condition compare`, writes one there), so `ray start` turns token auth on.
    # HOME is a folder of this test: the machine's own ~/.ray plays no part.
    env = user_env(tmp_path / "home")
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=120)
    started = subprocess.run([str(RAY), "start", "--head", "--port", str(port), "--num-cpus", "2", "--include-dashboard=false",
                              "--node-ip-address", "127.0.0.1", "--temp-dir", str(temp), "--disable-usage-stats"],
                             check=True, env=env, capture_output=True, text=True, timeout=180)
    assert "Token authentication is enabled" in started.stdout + started.stderr
    out = tmp_path / "quick"
    compare = [*CONDITION, "compare", "--quick", "--address", f"127.0.0.1:{port}", "--out", str(out)]
    try:
        # Without a token the cluster refuses this driver: one line saying what to set, Ray's retries in
        # OUT/logs (RAY_NUM_REDIS_GET_RETRIES only shortens Ray's 20 s of retries for the test).
        refused = subprocess.run(compare, env={**user_env(tmp_path / "other-home"), "RAY_NUM_REDIS_GET_RETRIES": "3"},
                                 capture_output=True, text=True, timeout=300)
        assert refused.returncode == 1 and "Traceback" not in refused.stderr and "gcs_client" not in refused.stderr
        assert refused.stderr.strip().splitlines()[-1].startswith(
            f"condition: error: Ray cluster at 127.0.0.1:{port}: the cluster wants Ray's authentication token and none was "
            "found here: set RAY_AUTH_TOKEN, or RAY_AUTH_TOKEN_PATH")
        assert "InvalidAuthToken" in (out / "logs" / "ray-driver.log").read_text()

        done = subprocess.run(compare, env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, done.stderr[-3000:] + "".join(p.read_text()[-3000:] for p in out.rglob("error.log"))
        assert f"Ray at 127.0.0.1:{port}" in done.stderr and "12 cells" in done.stderr and "0 already done" in done.stderr
        assert "gcs_client" not in done.stderr and "InvalidAuthToken" not in done.stderr
        assert done.stderr.count(": ok in ") == 12
        records = _records(out)
        assert len(records) == 12 and {r.status for r in records.values()} == {"ok"}
        assert not any(r.problems for r in records.values())
        assert not (out / "logs" / "ray").exists()  # a cluster's logs stay with the cluster
        assert (out / "logs" / "tf.log").is_file() and (out / "logs" / "torch.log").is_file()  # sent back by the workers
        assert _debris(out) == []
        assert _processes_mentioning(f"{temp}/")  # the command disconnected and left the cluster running
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
        report, html = (out / "report.md").read_text(), (out / "report.html").read_text()

        alone = tmp_path / "alone"
        shell = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}  # as from a shell: default threads
        runs = [subprocess.Popen([*CONDITION, fw, "prune", "--sparsity", "0.95", "--train-limit", "2000", "--eval-limit", "300",
                                  "--out", str(alone)], env=shell, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                for fw in ("tf", "torch")]
        for run in runs:
            output = run.communicate(timeout=900)[0]
            assert run.returncode == 0, output[-2000:]
        for fw, artifact in (("tf", "model_int8.tflite"), ("torch", "model.pte")):
            a, b = _prune_folder(alone, fw), _prune_folder(out, fw, pruned_to=0.95)
            assert a.name == b.name  # the same configuration hash
            digests = _digests(a)
            assert artifact in digests and any(name.endswith((".tosa", "_vela.tflite")) for name in digests)
            assert digests == _digests(b), fw
            assert _comparable(MetricsRecord.read(a)) == _comparable(MetricsRecord.read(b)), fw

        again = subprocess.run(compare, env=env, capture_output=True, text=True, timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        assert "12 already done" in again.stderr and ": ok in " not in again.stderr
        assert (out / "report.md").read_text() == report and (out / "report.html").read_text() == html
    finally:
        _stop(f"{temp}/")
    assert _processes_mentioning(f"{temp}/") == []


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


def _stop(text: str) -> None:
    """`ray stop` would stop every Ray on the machine (other users' too): end only this cluster's processes."""
    for sig, wait in ((signal.SIGTERM, 20.0), (signal.SIGKILL, 5.0)):
        for pid in _processes_mentioning(text):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while _processes_mentioning(text) and time.monotonic() < deadline:
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
