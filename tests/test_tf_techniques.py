"""Each TensorFlow technique and a chain, end to end on a small Fashion-MNIST subset with a real
Vela compile: the measured weights (counted on the exported int8 tensors) and Vela's encoded
bytes must move the way the technique promises."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from condition.backend.target import Target
from condition.datasets import FASHION_MNIST_DIR
from condition.run import RunConfig, run_config
from condition.techniques import make_config

pytestmark = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed")

SMALL = dict(train_limit=2000, eval_limit=500, epochs=1, seed=0)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """run(chain, target=..., model=...) -> (record, run folder), each configuration run once."""
    out = tmp_path_factory.mktemp("tf-runs")
    done: dict[tuple, tuple] = {}

    def run(*steps: tuple[str, dict], target: str = "ethos-u85-128", model: str = "mlp"):
        key = (tuple((t, tuple(sorted(o.items()))) for t, o in steps), target, model)
        if key not in done:
            # prune with 1 fine-tuning epoch, as before it chose its epochs: these tests check what each technique does
            # to the weights, not how far fine-tuning recovers (tests/test_fine_tuning.py)
            config = RunConfig("tf", tuple(make_config(t, {"fine_tune_epochs": 1, **o} if t == "prune" else o) for t, o in steps),
                               target=Target.default_for(target),
                               model=model, out=out, **SMALL)
            done[key] = (run_config(config), config.run_dir())
        return done[key]

    run.out = out
    return run


def _acc(record, kind: str) -> float:
    return record.accuracy_of(kind).value


def _weight_arrays(tflite: Path) -> list[np.ndarray]:
    """int8 weight tensors of the FULLY_CONNECTED / CONV_2D ops, as TFLite stores them ([out, ..., in])."""
    from ethosu.vela.tflite.Model import Model

    model = Model.GetRootAsModel(tflite.read_bytes(), 0)
    sg = model.Subgraphs(0)
    out = []
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        oc = model.OperatorCodes(op.OpcodeIndex())
        if max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode()) in (3, 9):
            t = sg.Tensors(int(op.InputsAsNumpy()[1]))
            out.append(model.Buffers(t.Buffer()).DataAsNumpy().view(np.int8).reshape(t.ShapeAsNumpy()))
    return out


def _is_two_four(w: np.ndarray) -> bool:
    """At least two zeros in every four consecutive input-channel weights (the last TFLite axis)."""
    if w.shape[-1] % 4:
        return True  # layers the pattern cannot apply to are left unstructured
    groups = w.reshape(-1, 4)
    return bool(np.all(np.count_nonzero(groups == 0, axis=1) >= 2))


def test_post_training_quant_dense_baseline(runs) -> None:
    rec, folder = runs(("post-training-quant", {}))
    assert rec.accuracy_of("float").evaluator == "keras float32"
    assert rec.accuracy_of("int8").evaluator == "tflite-interpreter int8"
    assert rec.accuracy_of("int8").images == 500
    assert _acc(rec, "float") > 0.6 and abs(_acc(rec, "int8") - _acc(rec, "float")) < 0.05
    assert rec.weights.params == 784 * 512 + 512 * 256 + 256 * 10
    assert rec.weights.sparsity < 0.05 and rec.weights.max_unique_values > 100
    assert rec.vela.original_weight_bytes == rec.weights.params and rec.vela.ops_on_cpu == 0
    assert (folder / "metrics.json").is_file() and (folder / "model_int8.tflite").is_file()
    assert (folder / rec.artifact("vela_tflite").path).is_file()
    assert not list(folder.parent.glob(".*partial*"))
    caches = list((runs.out / "tf" / ".float-cache").glob("*/model.keras"))
    assert len(caches) == 1


def test_float_model_is_trained_once(runs) -> None:
    runs(("post-training-quant", {}))
    rec, _ = runs(("prune", {"sparsity": 0.9}))
    assert any("from the float cache" in n for n in rec.notes)
    assert "train float" in rec.step_seconds


def test_prune_unstructured_shrinks_encoded_weights(runs) -> None:
    dense, _ = runs(("post-training-quant", {}))
    rec, folder = runs(("prune", {"sparsity": 0.9}))
    assert rec.weights.sparsity == pytest.approx(0.9, abs=0.01)  # counted on the int8 tensors
    assert rec.vela.encoded_weight_bytes < 0.3 * dense.vela.encoded_weight_bytes
    assert rec.vela.total_cycles < dense.vela.total_cycles
    assert _acc(rec, "int8") > 0.5
    assert not any(_is_two_four(w) for w in _weight_arrays(folder / "model_int8.tflite"))


def test_prune_two_four_and_further_inside_the_pattern(runs) -> None:
    dense, _ = runs(("post-training-quant", {}))
    half, half_dir = runs(("prune", {"sparsity": 0.5, "structure": "2:4"}))
    deep, deep_dir = runs(("prune", {"sparsity": 0.9, "structure": "2:4"}))
    assert half.weights.sparsity == pytest.approx(0.5, abs=0.01)
    assert deep.weights.sparsity == pytest.approx(0.9, abs=0.01)
    for folder in (half_dir, deep_dir):
        *hidden, classifier = _weight_arrays(folder / "model_int8.tflite")
        assert all(_is_two_four(w) for w in hidden)
        assert not _is_two_four(classifier)  # the classifier is never pruned (PruneConfig.left_out)
    # U85's MAC array skips the 2:4 zeros: fewer NPU cycles; Vela compresses the extra zeros.
    assert half.vela.npu_cycles < dense.vela.npu_cycles
    assert half.vela.encoded_weight_bytes < dense.vela.encoded_weight_bytes
    assert deep.vela.npu_cycles < dense.vela.npu_cycles  # retraining kept the pattern Vela skips
    assert deep.vela.encoded_weight_bytes < half.vela.encoded_weight_bytes
    assert deep.vela.total_cycles < half.vela.total_cycles


def test_cluster_limits_distinct_values(runs) -> None:
    dense, _ = runs(("post-training-quant", {}))
    rec, folder = runs(("cluster", {"clusters": 8}))
    assert rec.weights.max_unique_values <= 8
    # Per-tensor scales: the 8 shared values stay 8 int8 codes in the whole tensor, not per channel.
    for w in _weight_arrays(folder / "model_int8.tflite"):
        assert len(np.unique(w)) <= 8
    assert rec.vela.encoded_weight_bytes < dense.vela.encoded_weight_bytes
    assert _acc(rec, "int8") > 0.5


def test_prune_cluster_pcqat_chain_keeps_each_stage(runs) -> None:
    pruned, _ = runs(("prune", {"sparsity": 0.9}))
    rec, folder = runs(("prune", {"sparsity": 0.9}), ("cluster", {"clusters": 8}), ("qat", {"fine_tune_epochs": 1}))
    stages = {w.stage: w for w in rec.stage_weights}
    assert list(stages) == ["prune", "cluster"]
    assert stages["prune"].sparsity == pytest.approx(0.9, abs=0.01)
    assert stages["cluster"].sparsity > 0.85 and stages["cluster"].max_unique_values <= 8
    # PCQAT keeps both the zeros and the clusters through fake-quant training and conversion.
    assert rec.weights.sparsity > 0.85 and rec.weights.max_unique_values <= 8
    assert rec.vela.encoded_weight_bytes < pruned.vela.encoded_weight_bytes
    assert (folder / "after_prune_int8.tflite").is_file() and (folder / "after_cluster_int8.tflite").is_file()
    assert _acc(rec, "int8") > 0.5


def test_qat_alone(runs) -> None:
    rec, _ = runs(("qat", {"fine_tune_epochs": 1}))
    assert _acc(rec, "int8") > 0.6 and rec.weights.sparsity < 0.05
    assert rec.stage_weights == []


@pytest.mark.parametrize("npu", ["ethos-u55-128", "ethos-u65-256"])
def test_other_npu_families(runs, npu) -> None:
    rec, _ = runs(("prune", {"sparsity": 0.9}), target=npu)
    assert rec.target.npu == npu and rec.vela.accelerator == npu
    assert rec.vela.ops_on_cpu == 0 and rec.weights.sparsity == pytest.approx(0.9, abs=0.01)


def test_cnn_two_four_skips_layers_the_pattern_cannot_fit(runs) -> None:
    rec, folder = runs(("prune", {"sparsity": 0.5, "structure": "2:4"}), model="cnn")
    weights = _weight_arrays(folder / "model_int8.tflite")
    assert weights[0].shape[-1] == 1  # first conv has one input channel: left dense
    assert all(_is_two_four(w) for w in weights[:-1])  # the classifier is never pruned
    assert rec.vela.ops_on_cpu == 0 and _acc(rec, "int8") > 0.3
