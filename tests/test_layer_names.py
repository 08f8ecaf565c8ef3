"""Per-layer figures carry the model's layer names on both frontends (recorded Vela rows and weights)."""
import dataclasses
from pathlib import Path

from condition.backend.layer_names import keras_layer_name, names_from_rows, names_from_weights, names_like, weighted_rows
from condition.backend.metrics import MetricsRecord

RECORDS = Path(__file__).parent / "data" / "records"


def _record(path: str) -> MetricsRecord:
    return MetricsRecord.read(RECORDS / path / "metrics.json")


def test_tf_rows_and_weights_take_keras_layer_names():
    rec = _record("tf/mlp/prune-53fcc3077e")
    assert [l.name for l in rec.weights.layers][0].startswith("tfl.pseudo_qconst")
    estimate, weights = names_from_rows(rec.vela, rec.weights, lambda t: keras_layer_name(t, "dense_2"))
    assert [estimate.per_layer[i].name for i in weighted_rows(estimate)] == ["dense", "dense_1", "dense_2"]
    assert [l.name for l in weights.layers] == ["dense", "dense_1", "dense_2"]
    assert [l.zeros for l in weights.layers] == [l.zeros for l in rec.weights.layers]  # only names change


def test_torch_rows_take_module_names_from_weights():
    rec = _record("torch/mlp/prune-61b714f6e5")
    named = dataclasses.replace(rec.weights, layers=[dataclasses.replace(l, name=n) for l, n in
                                                     zip(rec.weights.layers, ["fc1", "fc2", "fc3"])])
    estimate, weights = names_from_weights(rec.vela, named)
    assert [r.name for r in estimate.per_layer] == ["fc1", "fc2", "fc3"]
    assert weights is named


def test_counts_that_differ_leave_names_alone():
    rec = _record("torch/mlp/prune-61b714f6e5")
    fewer = dataclasses.replace(rec.weights, layers=rec.weights.layers[:2])
    estimate, _ = names_from_weights(rec.vela, fewer)
    assert [r.name for r in estimate.per_layer] == [r.name for r in rec.vela.per_layer]
    assert names_like(fewer, rec.weights) is fewer


def test_keras_layer_name():
    assert keras_layer_name("net/block1_dw/depthwise;net/block1_dw/BiasAdd", "fc") == "block1_dw"
    # conv + BatchNorm + ReLU fused into one op: named after the conv, as on the torch side
    assert keras_layer_name("ds-cnn/stem_relu/Relu;ds-cnn/stem_bn/FusedBatchNormV3;ds-cnn/stem/Conv2D", "fc") == "stem"
    assert keras_layer_name("m/block3_project_bn/FusedBatchNormV3;m/block3_project/Conv2D", "fc") == "block3_project"
    assert keras_layer_name("m/block1_dw_relu6/Relu6;m/block1_dw_bn/FusedBatchNormV3;m/block1_dw/depthwise", "fc") == "block1_dw"
    assert keras_layer_name("m/dense/MatMul;m/dense/Relu;m/dense/BiasAdd", "fc") == "dense"
    assert keras_layer_name("StatefulPartitionedCall:0", "fc") == "fc"
    assert keras_layer_name("serving_default_input_1:0_copy", "fc") == "serving_default_input_1:0_copy"
