"""The tf side's NPU-friendly lowering (frontends/tf/lowering.py) and layer names for users' Keras models:
GlobalAveragePooling2D reaches Vela as one AvgPool (not MEAN → DepthwiseConv2D + Mul) with the same accuracy,
and a user's record names its layers after the Keras layers, with a real TFLite conversion and Vela compile."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from condition.backend.target import Target
from condition.backend.tflite_file import read_tflite
from condition.backend.vela import compile_tflite
from condition.datasets import FASHION_MNIST_DIR, load_dataset

needs_data = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST (dataset-fashion-mnist) not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))


def _keras():
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    from condition.frontends.tf import keras_modules

    return keras_modules()[1]


def _small_gap_cnn(sequential: bool):
    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(0)
    layers = [L.Conv2D(8, 3, 2, "same", use_bias=False), L.BatchNormalization(momentum=0.9), L.ReLU(),
              L.DepthwiseConv2D(3, 1, "same"), L.ReLU(), L.Conv2D(16, 1), L.ReLU(), L.GlobalAveragePooling2D(), L.Dense(10)]
    if sequential:
        return keras.Sequential([L.InputLayer((28, 28, 1)), *layers])
    inputs = L.Input((28, 28, 1))
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def test_rewrite_keeps_the_float_function_and_the_weights() -> None:
    from condition.frontends.tf.lowering import npu_friendly

    L = _keras().layers
    for sequential in (True, False):
        model = _small_gap_cnn(sequential)
        new, notes = npu_friendly(model)
        assert new is not model and any(type(l) is L.GlobalAveragePooling2D for l in model.layers)  # caller's untouched
        kinds = [type(l) for l in new.layers]
        assert L.GlobalAveragePooling2D not in kinds and L.AveragePooling2D in kinds and L.Flatten in kinds
        assert len(notes) == 1 and notes[0].startswith("rewrite: ") and "AveragePooling2D(14×14, valid)" in notes[0]
        x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
        np.testing.assert_allclose(new(x).numpy(), model(x).numpy(), atol=1e-5)


def test_models_without_global_pooling_or_that_cannot_be_rebuilt_are_left_alone() -> None:
    from condition.frontends.tf.lowering import npu_friendly

    keras = _keras()
    L = keras.layers
    plain = keras.Sequential([L.InputLayer((28, 28, 1)), L.Flatten(), L.Dense(10)])
    assert npu_friendly(plain) == (plain, [])

    class Subclassed(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.pool, self.fc = L.Conv2D(4, 3), L.GlobalAveragePooling2D(), L.Dense(10)

        def call(self, x):  # type: ignore[no-untyped-def]
            return self.fc(self.pool(self.conv(x)))

    sub = Subclassed()
    sub(np.zeros((1, 28, 28, 1), np.float32))
    same, notes = npu_friendly(sub)
    assert same is sub and len(notes) == 1 and "kept as TFLite MEAN" in notes[0] and "subclassed" in notes[0]


@needs_data
def test_pooling_rewrite_in_the_tflite_and_vela_with_the_same_accuracy(tmp_path: Path) -> None:
    """MEAN → AVERAGE_POOL_2D in the .tflite, one AvgPool in Vela and fewer NPU cycles, and the int8
    accuracy of the two files within 0.2 points on the 10,000 test images."""
    from condition.frontends.tf.accuracy import int8_accuracy
    from condition.frontends.tf.export import to_int8_tflite
    from condition.frontends.tf.lowering import npu_friendly

    ds = load_dataset("fashion-mnist").subset(3000, None)  # all 10,000 test images: a 0.2-point bound needs them
    x_train, x_test = ds.normalised("train")[..., None], ds.normalised("test")[..., None]
    model = _small_gap_cnn(sequential=False)
    model.compile(_keras().optimizers.Adam(0.01), _keras().losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, ds.y_train, epochs=2, batch_size=32, verbose=0)  # about 0.55 float accuracy
    rewritten, _ = npu_friendly(model)
    mean = to_int8_tflite(model, x_train[:200], tmp_path / "mean.tflite")
    pool = to_int8_tflite(rewritten, x_train[:200], tmp_path / "pool.tflite")
    assert "Mean" in read_tflite(mean).operator_names and "Mean" not in read_tflite(pool).operator_names
    assert "AvgPool" in read_tflite(pool).operator_names  # AVERAGE_POOL_2D, as Vela's reader names it
    target = Target.default_for("ethos-u85-128")
    before = compile_tflite(mean, target, tmp_path / "vela-mean").estimate
    after = compile_tflite(pool, target, tmp_path / "vela-pool").estimate
    assert [r.operator for r in after.per_layer if r.operator in ("AvgPool", "Mul")] == ["AvgPool"]
    assert after.npu_cycles < before.npu_cycles
    # what `condition measure` / `advise` tell about the MEAN file: the AvgPool's cost from a one-op model
    from condition.backend.lowering_advice import mean_rewrites

    (advice,) = mean_rewrites(read_tflite(mean), before, target, tmp_path / "lowering")
    assert (advice.height, advice.width, advice.channels) == (14, 14, 16)
    assert advice.cycles_as_avgpool == next(r.op_cycles for r in after.per_layer if r.operator == "AvgPool")
    assert advice.operators_now == ("DepthwiseConv2D", "Mul") and advice.gain_cycles > 0
    assert mean_rewrites(read_tflite(pool), after, target, tmp_path / "lowering2") == []
    from condition.backend.lowering_advice import input_copies

    assert input_copies(read_tflite(mean), before) == []  # a (28, 28, 1) input: nothing to copy
    a, b = int8_accuracy(mean, x_test, ds.y_test).value, int8_accuracy(pool, x_test, ds.y_test).value
    assert a > 0.3 and abs(a - b) <= 0.002, (a, b)


def test_a_reshaped_graph_input_is_named_with_the_copy_vela_compiles_for_it(tmp_path: Path) -> None:
    """A Keras Reshape((28, 28, 1)) of a (28, 28) input: Vela copies the input (MemoryCopy) before the reshape can
    alias it; `condition measure` and `advise` say so, with the copy's cycles from the model's own compile."""
    from condition.backend.lowering_advice import input_copies, lowering_notes
    from condition.frontends.tf.export import to_int8_tflite

    keras = _keras()
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([L.InputLayer((28, 28)), L.Reshape((28, 28, 1)), L.Conv2D(8, 3, 2, "same"), L.ReLU(),
                              L.Flatten(), L.Dense(10)])
    x = np.random.default_rng(0).random((32, 28, 28), dtype=np.float32)
    path = to_int8_tflite(model, x, tmp_path / "reshaped.tflite")
    target = Target.default_for("ethos-u55-128")
    estimate = compile_tflite(path, target, tmp_path / "vela").estimate
    copy_rows = [r for r in estimate.per_layer if r.operator == "MemoryCopy"]
    assert len(copy_rows) == 1 and copy_rows[0].op_cycles > 0
    (copy,) = input_copies(read_tflite(path), estimate)
    assert (copy.shape, copy.reshaped, copy.cycles) == ((1, 28, 28), (1, 28, 28, 1), copy_rows[0].op_cycles)
    (note,) = lowering_notes(path, estimate, target, tmp_path / "lowering")
    assert note.startswith(f"lowering: the graph input {copy.tensor} (28×28) is reshaped to 28×28×1") and "MemoryCopy" in note


@needs_data
def test_a_user_keras_model_record_names_layers_after_keras(tmp_path: Path) -> None:
    """Weight layers and Vela rows carry the Keras layer names (not `tfl.pseudo_qconst3`, not the fused
    activation's `re_lu`), the global pooling row is an AvgPool named after the layer, and the record
    notes the rewrite."""
    import user_models

    from condition.run import RunConfig, run_config
    from condition.techniques import make_config

    path = tmp_path / "user.keras"
    _keras().backend.clear_session()  # Keras' default names count per process: a user's file starts at conv2d
    user_models.keras_net((28, 28, 1), width=8).save(path)
    config = RunConfig("tf", (make_config("post-training-quant", {}),), model=str(path), out=tmp_path / "out",
                       train_limit=500, eval_limit=200, epochs=1)
    record = run_config(config)
    names = [layer.name for layer in record.weights.layers]
    assert names == ["conv2d", "depthwise_conv2d", "conv2d_1", "depthwise_conv2d_1", "conv2d_2", "depthwise_conv2d_2",
                     "conv2d_3", "dense"]
    rows = {(r.name, r.operator) for r in record.vela.per_layer if r.op_cycles}
    assert ("global_average_pooling2d", "AvgPool") in rows and ("conv2d", "Conv2D") in rows
    assert not any(r.name.startswith(("re_lu", "tfl.")) for r in record.vela.per_layer)
    assert any(n.startswith("rewrite: global_average_pooling2d GlobalAveragePooling2D") for n in record.notes)
    assert record.versions["ethos-u-vela"] == config.identity()["tools"]["ethos-u-vela"]
