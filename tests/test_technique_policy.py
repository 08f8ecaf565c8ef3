"""The framework-free parts both frontends share: which layers prune and cluster condition (and the
reasons the record gives for the others), the numpy k-means, and old records without the new
per-layer fields."""
import numpy as np
import pytest

from condition.backend.metrics import LayerWeights, _weight_stats
from condition.clustering import cluster_indices, cluster_means
from condition.errors import ConfigError
from condition.models import convnet_spec
from condition.pruning import kept_count, layer_mask
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
        "image stem (1 input channels)", "depthwise", None, "8 weights per output channel (fewer than 16)", None]
    assert config.left_out(LayerInfo("stem", "conv", 3 * 3 * 3 * 64, 64, 3)) == "image stem (3 input channels)"  # 27 per output
    assert config.left_out(LayerInfo("conv", "conv", 3 * 3 * 4 * 16, 16, 4)) is None  # 36 per output, 576 in all
    assert config.left_out(LayerInfo("head", "conv", 16 * 128, 128, 16)) is None  # 16 per output: the threshold itself
    assert config.left_out(LayerInfo("head", "conv", 15 * 128, 128, 15)) == "15 weights per output channel (fewer than 16)"
    assert config.left_out(LayerInfo("project", "conv", 16 * 8, 8, 16)) == "128 weights (fewer than 256)"
    assert config.left_out(LayerInfo("project", "conv", 16 * 16, 16, 16)) is None  # 256: the floor itself
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
    assert conditioning((PruneConfig(0.9), config), STEM) == (["cluster"], {"prune": "image stem (1 input channels)"})
    assert plan_note(PruneConfig(0.9), [STEM, DW, PW, FC, LayerInfo("block2_dw", "depthwise", 576, 64, 1)]) == (
        "prune 90 %: 2 of 5 layers; left out: stem (image stem (1 input channels)); "
        "block1_dw, block2_dw (depthwise)")


def test_layer_sparsity_keeps_two_weights_in_every_output_channel():
    """mobilenet-v2's 16→128 head at 0.95 kept 0.8 weights per output channel (a fifth of its channels
    emptied); each layer is pruned to at most what leaves MIN_KEPT_PER_CHANNEL (2) per channel."""
    head = LayerInfo("head", "conv", 16 * 128, 128, 16)
    project = LayerInfo("block3_project", "conv", 96 * 16, 16, 96)
    assert [PruneConfig(0.95).layer_sparsity(layer) for layer in (head, project)] == [0.875, 0.95]
    assert PruneConfig(0.8).layer_sparsity(head) == 0.8
    assert PruneConfig(0.95, scope="global").layer_sparsity(head) == 0.95  # one ranking over the layers
    assert PruneConfig(0.95, structure="2:4").layer_sparsity(LayerInfo("pw", "conv", 4 * 8, 8, 4)) == 0.5  # the pattern stays
    assert plan_note(PruneConfig(0.95), [head, project]) == (
        "prune 95 %: 2 of 2 layers; pruned less, to keep 2 weights per output channel: head 87.5 %")
    assert plan_note(PruneConfig(0.8), [head, project]) == "prune 80 %: 2 of 2 layers"


def _builtin_layers(model: str, channels: int) -> list[LayerInfo]:
    """The weighted layers of a built-in BatchNorm CNN as both frontends describe them (kernels of
    convnet_spec, 28x28 images of `channels` channels, 10 classes)."""
    spec = convnet_spec(model, (28, 28, channels), 10)
    layers, width = [], channels
    for conv in spec.convs():
        if conv.kind == "depthwise":
            layers.append(LayerInfo(conv.name, "depthwise", conv.kernel ** 2 * width, width, 1))
        else:
            layers.append(LayerInfo(conv.name, "conv", conv.kernel ** 2 * width * conv.filters, conv.filters, width))
            width = conv.filters
    return layers + [LayerInfo("fc", "fc", width * 10, 10, width, last=True)]


@pytest.mark.parametrize("channels", [1, 3])
def test_prune_policy_on_the_builtin_cnns(channels):
    """mobilenet-v2 at 0.9 reaches 0.5x the dense encoded weights only with its 16-input 1x1 convs
    (the head and block3_expand hold most of its weights); the 16->8 bottleneck (128 weights) and
    the 8-input expand conv stay dense. DS-CNN: the four 64x64 pointwise convs."""
    config = PruneConfig(0.9)
    mobilenet = _builtin_layers("mobilenet-v2", channels)
    assert [layer.name for layer in mobilenet if config.left_out(layer) is None] == [
        "block2_project", "block3_expand", "block3_project", "head"]
    reasons = {layer.name: config.left_out(layer) for layer in mobilenet}
    assert reasons["stem"] == f"image stem ({channels} input channels)"
    assert reasons["block1_project"] == "128 weights (fewer than 256)"
    assert reasons["block2_expand"] == "8 weights per output channel (fewer than 16)"
    assert reasons["fc"] == "the classifier (last weighted layer)"
    pruned = sum(layer.params for layer in mobilenet if reasons[layer.name] is None)
    assert pruned / sum(layer.params for layer in mobilenet) > 0.6
    ds_cnn = _builtin_layers("ds-cnn", channels)
    assert [layer.name for layer in ds_cnn if config.left_out(layer) is None] == [f"block{i}_pw" for i in range(1, 5)]


def test_layer_mask_keeps_a_weight_in_every_output_channel_at_the_same_sparsity():
    rng = np.random.default_rng(0)
    scores = np.abs(rng.normal(size=(128, 16)))  # mobilenet-v2's head: 16 weights per output channel
    scores[:20] *= 1e-3  # quiet channels: one ranking over the layer empties them
    plain, every = layer_mask(scores, 0.9), layer_mask(scores, 0.9, every_channel=True)
    assert plain.sum() == every.sum() == kept_count(scores.size, 0.9) == 205
    assert (plain[:20].sum(axis=1) == 0).all() and (every.sum(axis=1) >= 1).all()
    emptied = int((plain.sum(axis=1) == 0).sum())  # the 20 quiet ones and 18 more
    assert every[:20].sum() == 20 and (every * plain).sum() == 205 - emptied  # each channel's best, then the same ranking
    fewer = layer_mask(scores, 0.95, every_channel=True)  # 102 kept for 128 channels: the loudest 102
    assert fewer.sum() == 102 and (fewer.sum(axis=1) <= 1).all() and fewer[:20].sum() == 0
    assert PruneConfig(0.9).keeps_every_channel and PruneConfig(0.9, fine_tune_epochs=0, schedule="polynomial").keeps_every_channel
    assert not PruneConfig(0.9, schedule="polynomial").keeps_every_channel  # tfmot's ramp ranks the layer as a whole
    assert not PruneConfig(0.9, scope="global").keeps_every_channel and not PruneConfig(0.9, structure="2:4").keeps_every_channel


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


def test_sparsity_preserving_kmeans_makes_zero_one_of_the_k_values_as_tfmot_does():
    """tfmot's sparsity-preserving clustering: one centroid fixed at 0, k-1 for the rest; a
    non-zero weight nearer to 0 than to any other centroid becomes 0 (also in a dense layer)."""
    rng = np.random.default_rng(0)
    dense = rng.normal(size=(10, 256))
    assign = cluster_indices(dense, 8, CentroidInit.KMEANS_PLUS_PLUS, preserve_zeros=True, rng=np.random.default_rng(1))
    shared = cluster_means(dense, assign, 8)
    values = np.unique(shared)
    assert 0.0 in values and len(values) == 8 and assign.max() == 6
    low, high = values[values < 0].max() / 2, values[values > 0].min() / 2  # halfway to the next value on each side
    zero = assign == -1
    assert zero.any() and np.all((dense[zero] >= low) & (dense[zero] <= high))  # the weights nearest to 0 join it
    assert not np.any((dense[~zero] > low) & (dense[~zero] < high))
    pruned = np.where(np.abs(dense) > 1.0, dense, 0.0)  # survivors far from 0: none joins the zeros
    assign = cluster_indices(pruned, 8, CentroidInit.KMEANS_PLUS_PLUS, preserve_zeros=True, rng=np.random.default_rng(1))
    assert ((assign == -1) == (pruned == 0)).all()
    negative = int(round(7 * (pruned < 0).sum() / (pruned != 0).sum()))  # tfmot's split of the k-1 by sign
    assert len(np.unique(assign[pruned < 0])) == negative and len(np.unique(assign[pruned > 0])) == 7 - negative


def test_records_without_the_new_layer_fields_still_load():
    old = {"layers": [{"name": "fc1", "shape": [512, 784], "params": 401408, "zeros": 0, "unique_values": 255}]}
    layer = _weight_stats(old).layers[0]
    assert layer == LayerWeights("fc1", [512, 784], 401408, 0, 255)
    assert layer.unique_axis == "" and layer.conditioned == [] and layer.left_out == {} and not layer.two_four


def test_clustering_that_keeps_zeros_needs_more_non_zero_weights_than_clusters():
    """A small layer after channel-prune and prune 95 % holds fewer non-zero weights than clusters: tfmot's
    k-means++ cannot sample them, so the policy leaves it out (both frontends count them on the weights)."""
    from condition.techniques import ClusterConfig, LayerInfo

    small = LayerInfo("block1_pw", "conv", 256, 16, 16, nonzero=13)
    assert ClusterConfig(16).left_out(small) == "13 non-zero weights, not more than 16 clusters"
    assert ClusterConfig(16, preserve_sparsity=False).left_out(small) is None
    assert ClusterConfig(8).left_out(small) is None
