"""Prune, cluster and their chains on a BatchNorm CNN (conv stem, depthwise, residual Add, 1x1
convs, ReLU and ReLU6, Dense) with the tf frontend, counted on the exported int8 .tflite tensors.
The same network and checks as tests/test_torch_bn_techniques.py. Random images: these check where
zeros and shared values end up, not accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from condition.backend.target import Target
from condition.frontend import StepContext
from condition.frontends.tf import keras_modules
from condition.frontends.tf.frontend import FRONTEND
from condition.frontends.tf.train import TrainData
from condition.pruning import kept_count
from condition.techniques import ClusterConfig, PruneConfig, QatConfig

from bn_cnn_checks import LAYERS, check_cluster, check_prune_scope, check_two_four


def bn_cnn():
    _, keras, _ = keras_modules()
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = L.Input((28, 28, 1))
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(L.Conv2D(32, 3, 2, "same", use_bias=False, name="stem")(inputs)))
    y = L.ReLU()(L.BatchNormalization(name="dw_bn")(L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(x)))
    x = L.Add()([x, L.BatchNormalization(name="pw_bn")(L.Conv2D(32, 1, use_bias=False, name="pw")(y))])
    x = L.ReLU(6.0)(L.BatchNormalization(name="head_bn")(L.Conv2D(64, 1, use_bias=False, name="head")(x)))
    return keras.Model(inputs, L.Dense(10, name="fc")(L.GlobalAveragePooling2D()(x)))


@pytest.fixture(scope="module")
def data() -> TrainData:
    rng = np.random.default_rng(0)
    x = rng.random((256, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    return TrainData(x, y, x[:32], y[:32], seed=0)


def _chain(data: TrainData, tmp_path, *steps, notes: list[str] | None = None):
    """The steps applied in order, as the pipeline does, then exported to int8 and counted."""
    model, done = bn_cnn(), ()
    for step in steps:
        model = FRONTEND.registry.apply(model, step, StepContext(data, Target(), 0, done, note=(notes if notes is not None else []).append))
        done = (*done, step)
    stats = FRONTEND.stage_weights(model, StepContext(data, Target(), 0, done), tmp_path / "model")
    assert len(stats.layers) == len(LAYERS)
    return dict(zip(LAYERS, stats.layers))


def test_cluster_holds_k_values_per_tensor_after_batchnorm_folding(data, tmp_path):
    notes = []
    layers = _chain(data, tmp_path, ClusterConfig(clusters=8), notes=notes)
    check_cluster(layers, notes)  # the depthwise kernel too, which tfmot does not cluster


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_scope_policy_and_per_layer_sparsity(data, tmp_path, scope):
    notes = []
    layers = _chain(data, tmp_path, PruneConfig(0.9, scope=scope, fine_tune_epochs=1), notes=notes)
    check_prune_scope(layers, notes, scope)


@pytest.mark.parametrize("schedule", ["constant", "polynomial"])
def test_prune_keeps_a_weight_in_every_output_channel(data, schedule):
    """Quiet output channels (the head's first 8 scaled by 1e-3) are emptied by one |w| ranking over
    the layer (tfmot's polynomial ramp); pruned at once each channel keeps its largest weight (the
    same as torch: condition.pruning.layer_mask) and the layer stays at the request."""
    model = bn_cnn()
    kernel = model.get_layer("head").kernel
    kernel.assign(kernel.numpy() * np.where(np.arange(64) < 8, 1e-3, 1.0).astype(np.float32))
    pruned = FRONTEND.registry.apply(model, PruneConfig(0.9, schedule=schedule, fine_tune_epochs=1), StepContext(data, Target(), 0, ()))
    head = pruned.get_layer("head").kernel.numpy().reshape(-1, 64)  # (32 inputs, 64 outputs)
    assert int((head == 0).sum()) == head.size - kept_count(head.size, 0.9)
    kept = (head != 0).sum(axis=0)
    if schedule == "constant":
        assert (kept >= 1).all() and (kept[:8] == 1).all(), kept
    else:
        assert (kept[:8] == 0).all(), kept


def test_two_four_layers_carry_the_pattern_and_depthwise_does_not(data, tmp_path):
    layers = _chain(data, tmp_path, PruneConfig(0.5, structure="2:4", fine_tune_epochs=1))
    check_two_four(layers)


def test_batchnorm_chain_prune_cluster_qat_keeps_zeros_and_shared_values(data, tmp_path):
    layers = _chain(data, tmp_path, PruneConfig(0.8, fine_tune_epochs=1), ClusterConfig(clusters=8), QatConfig())
    for layer in layers.values():  # CQAT quantizes convs per channel, Dense per tensor; the depthwise kernel is held
        assert layer.unique_values <= 8 and "cluster" in layer.conditioned, layer
    for n in ("pw", "head"):
        assert layers[n].conditioned == ["prune", "cluster"] and layers[n].sparsity >= 0.79, n
    assert layers["fc"].conditioned == ["cluster"]
