"""Same configuration, same bytes: a prune cell run alone (`condition tf|torch prune` in a fresh
process with the frameworks' default threads) and the same cell inside `condition compare --jobs 2`
(Ray workers, a private OUT per cell, its float model from the lane's cache) give the same
configuration hash, byte-identical artifacts (.tflite, Vela's .tflite and CSVs, .pte, TOSA) and
the same record apart from wall times and the float-cache note."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.cli import main
from condition.datasets import FASHION_MNIST_DIR

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST not installed")
CONDITION = [sys.executable, "-c", "from condition.cli import entry_point; entry_point()"]
LIMITS = ["--train-limit", "500", "--eval-limit", "50"]
RECIPE = """
frontends = ["tf", "torch"]
train_limit = 500
eval_limit = 50
[[chains]]
steps = ["post-training-quant"]
[[chains]]
steps = [{technique = "prune", sparsity = 0.9}]
"""
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def _prune_folder(out: Path, frontend: str) -> Path:
    (folder,) = [p for p in (out / frontend / "mlp").glob("prune-*") if p.is_dir()]
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


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_a_cell_alone_and_in_compare_with_two_jobs_gives_the_same_bytes(tmp_path):
    alone, compared = tmp_path / "alone", tmp_path / "compare"
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}  # as from a shell: default threads
    runs = [subprocess.Popen([*CONDITION, frontend, "prune", "--sparsity", "0.9", *LIMITS, "--out", str(alone)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for frontend in ("tf", "torch")]
    for run in runs:
        output = run.communicate(timeout=900)[0]
        assert run.returncode == 0, output[-2000:]
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(RECIPE)
    assert main(["compare", "--recipe", str(recipe), "--out", str(compared), "--jobs", "2"]) == 0

    for frontend, artifact in (("tf", "model_int8.tflite"), ("torch", "model.pte")):
        a, b = _prune_folder(alone, frontend), _prune_folder(compared, frontend)
        assert a.name == b.name  # the same configuration hash
        digests = _digests(a)
        assert artifact in digests and any(name.endswith((".tosa", "_vela.tflite")) for name in digests)
        assert digests == _digests(b), frontend
        assert _comparable(MetricsRecord.read(a)) == _comparable(MetricsRecord.read(b)), frontend


def test_a_keras_model_built_after_others_in_the_same_process_has_the_same_layer_names():
    """Ray workers run many cells in one process; Keras numbers layer names per process, and the names
    are in the .tflite and the record, so a later cell's model must not be named dense_4."""
    from condition.frontends.tf.models import build_builtin

    first = [layer.name for layer in build_builtin("mlp", (28, 28), 10, seed=0).layers]
    build_builtin("cnn", (28, 28), 10, seed=1)
    assert [layer.name for layer in build_builtin("mlp", (28, 28), 10, seed=0).layers] == first
