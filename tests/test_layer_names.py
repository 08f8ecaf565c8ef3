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


def test_keras_names_of_fused_ops_without_bias_and_of_ops_without_weights() -> None:
    # a conv without bias: the converter appends a digit to keep the tensor name unique; the activation is not the name
    assert keras_layer_name("model/re_lu/Relu;model/batch_normalization/FusedBatchNormV3;model/conv2d/Conv2D1", "d") == "conv2d"
    assert keras_layer_name("model/re_lu_6/Relu;model/add/add", "d") == "add"  # an Add, not its fused ReLU
    assert keras_layer_name("model/global_average_pooling2d/AvgPool", "d") == "global_average_pooling2d"


def test_torch_rows_without_weights_take_module_names() -> None:
    from condition.backend.layer_names import names_of_unweighted_rows
    from condition.backend.metrics import LayerEstimate, VelaEstimate

    rows = [LayerEstimate("stem", "Conv2D", "NPU", 10, 10, 100, 50.0),
            LayerEstimate("tosa_clamp_default", "Clamp", "NPU", 0, 0, 0, 0.0),
            LayerEstimate("tosa_rescale_default_6", "Add", "NPU", 5, 5, 0, 0.0),
            LayerEstimate("tosa_avg_pool2d_default", "AvgPool", "NPU", 7, 7, 0, 0.0),
            LayerEstimate("fc", "Conv2D", "NPU", 3, 3, 30, 10.0)]
    estimate = VelaEstimate(**{**{f: 0 for f in ("clock_hz", "original_weight_bytes", "encoded_weight_bytes", "npu_cycles",
                                                 "total_cycles", "sram_bytes", "dram_bytes", "on_chip_flash_bytes",
                                                 "off_chip_flash_bytes", "macs", "inference_ms")},
                               "accelerator": "ethos-u85-128", "system_config": "", "memory_mode": "",
                               "weights_storage_area": "", "per_layer": rows})
    named = names_of_unweighted_rows(estimate, {"AvgPool": ["6"], "Add": ["5.add"]})
    assert [r.name for r in named.per_layer] == ["stem", "stem", "5.add", "6", "fc"]  # the fused Clamp after its conv
    unnamed = names_of_unweighted_rows(estimate, {"AvgPool": ["6", "7"]})  # counts differ: the op, cleaned
    assert [r.name for r in unnamed.per_layer][2:4] == ["rescale", "avg_pool2d"]
