"""The framework-free parts both frontends share: which layers prune and cluster condition (and the
reasons the record gives for the others), the numpy k-means, and old records without the new
per-layer fields."""
import numpy as np
import pytest

from condition.backend.metrics import LayerWeights, _weight_stats
from condition.clustering import cluster_indices, cluster_means
from condition.errors import ConfigError
from condition.techniques import CentroidInit, ClusterConfig, LayerInfo, PruneConfig, Scope, conditioning, plan_note

STEM = LayerInfo("stem", "conv", 3 * 3 * 1 * 64, 64, 1)  # an image stem: 9 weights per output channel
DW = LayerInfo("block1_dw", "depthwise", 3 * 3 * 64, 64, 1)
PW = LayerInfo("block1_pw", "conv", 64 * 64, 64, 64)
NARROW = LayerInfo("expand", "conv", 8 * 48, 48, 8)  # a 1x1 conv from 8 channels
FC = LayerInfo("fc", "fc", 64 * 10, 10, 64)
TINY = LayerInfo("tiny", "fc", 2 * 5, 5, 2)


def test_prune_policy_unstructured():
    config = PruneConfig(0.9)
    assert config.scope is Scope.LAYER  # the default never empties a layer
    assert [config.left_out(layer) for layer in (STEM, DW, PW, NARROW, FC)] == [
        "9 weights per output channel (fewer than 32)", "depthwise", None, "8 weights per output channel (fewer than 32)", None]
    assert config.left_out(LayerInfo("up", "transpose_conv", 100, 4, 25)) == "transpose_conv layer (only Conv and Dense are pruned)"
    assert config.left_out(LayerInfo("fc", "fc", 640, 10, 64, last=True)) == "the classifier (last weighted layer)"
    assert PruneConfig(0.5, structure="2:4").left_out(LayerInfo("fc", "fc", 640, 10, 64, last=True)) is not None
    assert ClusterConfig().left_out(LayerInfo("fc", "fc", 640, 10, 64, last=True)) is None  # clustered all the same


def test_prune_policy_two_four_needs_input_channels_in_fours_and_never_depthwise():
    config = PruneConfig(0.5, structure="2:4")
    assert config.left_out(STEM) == "1 input channels, not a multiple of 4"
    assert config.left_out(DW) == "depthwise"
    assert config.left_out(NARROW) is None and config.left_out(PW) is None  # fan-in does not matter for the pattern


def test_scope_is_validated_and_labelled():
    assert PruneConfig(scope="global").label() == "prune 95 % global"
    with pytest.raises(ConfigError, match="choose layer or global"):
        PruneConfig(scope="everything")
    with pytest.raises(ConfigError):
        PruneConfig(1.0)


def test_cluster_policy_and_the_record_lines():
    config = ClusterConfig(clusters=16)
    assert [config.left_out(layer) for layer in (STEM, DW, PW, FC)] == [None] * 4
    assert config.left_out(TINY) == "10 weights, not more than 16 clusters"
    assert conditioning((PruneConfig(0.9), config), STEM) == (["cluster"], {"prune": "9 weights per output channel (fewer than 32)"})
    assert plan_note(PruneConfig(0.9), [STEM, DW, PW, FC, LayerInfo("block2_dw", "depthwise", 576, 64, 1)]) == (
        "prune 90 %: 2 of 5 layers; left out: stem (9 weights per output channel (fewer than 32)); "
        "block1_dw, block2_dw (depthwise)")


@pytest.mark.parametrize("init", list(CentroidInit))
def test_kmeans_shares_k_values_and_pins_zeros(init):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(32, 16)).astype(np.float32)
    w[w < -1.0] = 0.0
    assign = cluster_indices(w, 8, init, preserve_zeros=True, rng=np.random.default_rng(1))
    shared = cluster_means(w, assign, 8)
    assert len(np.unique(shared)) <= 8 and bool(np.all(shared[w == 0] == 0)) and (assign[w == 0] == -1).all()
    assert np.abs(shared - w).mean() < 0.2  # close to the weights it replaces
    again = cluster_indices(w, 8, init, preserve_zeros=True, rng=np.random.default_rng(1))
    assert (again == assign).all()  # seeded: the same clusters every time


def test_records_without_the_new_layer_fields_still_load():
    old = {"layers": [{"name": "fc1", "shape": [512, 784], "params": 401408, "zeros": 0, "unique_values": 255}]}
    layer = _weight_stats(old).layers[0]
    assert layer == LayerWeights("fc1", [512, 784], 401408, 0, 255)
    assert layer.unique_axis == "" and layer.conditioned == [] and layer.left_out == {} and not layer.two_four
