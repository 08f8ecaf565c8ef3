"""Channel pruning's framework-free plan and the NPU granule read from Vela (real Vela compiles of one-op models)."""
from __future__ import annotations

import numpy as np
import pytest

from condition.backend.npu_granule import channel_granule, granule_from_sweep, layer_cycles
from condition.backend.target import Target
from condition.channel_plan import (ChannelGroup, LayerGeometry, channel_scores, cycle_plan, kept_indices, share_plan)
from condition.errors import ConfigError
from condition.techniques import ChannelPruneConfig, check_chain, PruneConfig


def ds_cnn_like() -> tuple[list[ChannelGroup], list[LayerGeometry]]:
    """The built-in ds-cnn's groups and layer shapes on 28×28×1 images, written out by hand."""
    groups = [ChannelGroup("stem", 64, ("stem",), ("block1_dw",), ("block1_pw",))]
    layers = [LayerGeometry("stem", "conv", 1, 64, (3, 3), (2, 2), (28, 28), None, "stem")]
    hw, prev = 14, "stem"
    for i in range(1, 5):
        stride = 2 if i == 1 else 1
        name = f"block{i}_pw"
        groups.append(ChannelGroup(name, 64, (name,), (f"block{i + 1}_dw",) if i < 4 else (),
                                   (f"block{i + 1}_pw",) if i < 4 else ("fc",)))
        layers.append(LayerGeometry(f"block{i}_dw", "depthwise", 64, 64, (3, 3), (stride, stride), (hw, hw), prev, prev))
        hw = -(-hw // stride)
        layers.append(LayerGeometry(name, "conv", 64, 64, (1, 1), (1, 1), (hw, hw), prev, name))
        prev = name
    groups.append(ChannelGroup("fc", 10, ("fc",), left_out="the model's class scores"))
    layers.append(LayerGeometry("fc", "fc", 64, 10, in_group=prev))
    return groups, layers


def test_granule_is_where_the_cycles_step():
    steps_of_8 = [1000 + 500 * (-(-c // 8)) + c for c in range(1, 65)]  # a new block every 8 channels
    assert granule_from_sweep(steps_of_8) == 8
    assert granule_from_sweep([100 * c for c in range(1, 65)]) == 1  # every channel costs: no granule
    odd = list(steps_of_8)
    odd[2] = 5000  # a quirk below the granule (Vela picks another block under 8 channels) does not count
    assert granule_from_sweep(odd) == 8


@pytest.mark.parametrize("npu, granule", [("ethos-u55-128", 8), ("ethos-u85-128", 8), ("ethos-u55-32", 4), ("ethos-u85-512", 16),
                                          ("ethos-u65-256", 16)])  # U65: from the compute steps (weight fetch hides the rest)
def test_granule_from_vela(npu, granule):
    assert channel_granule(Target.default_for(npu)) == granule


def test_one_channel_past_the_granule_costs_a_block():
    target = Target.default_for("ethos-u55-128")
    conv = lambda c: layer_cycles(LayerGeometry("pw", "conv", 64, c, (1, 1), (1, 1), (16, 16)), target)
    assert conv(33) > conv(32) * 1.05
    assert conv(16) < conv(32) < conv(64)


def test_share_plan_keeps_whole_granules():
    groups = [ChannelGroup("a", 64, ("a",)), ChannelGroup("b", 100, ("b",)), ChannelGroup("c", 8, ("c",)),
              ChannelGroup("fc", 10, ("fc",), left_out="the model's class scores")]
    plan = share_plan(groups, 0.5, 8)
    assert plan.kept == {"a": 32, "b": 48}  # 100 · 0.5 = 50 → 48
    assert plan.left_out == {"c": "8 channels, not more than the granule of 8", "fc": "the model's class scores"}
    assert share_plan(groups, 0.6, 16).kept == {"a": 16, "b": 32}  # 25.6 → 16; 40 → 32
    assert share_plan(groups, 0.95, 16).kept["a"] == 16  # never below one granule
    assert share_plan(groups, 0.0, 8).kept == {"a": 64, "b": 96}


def test_share_plan_layer_rows_follow_the_groups():
    groups, layers = ds_cnn_like()
    plan = share_plan(groups, 0.5, 8)
    rows = {r.name: r for r in plan.layer_rows(layers)}
    assert (rows["stem"].in_before, rows["stem"].in_after, rows["stem"].out_after) == (1, 1, 32)
    assert (rows["block1_dw"].in_after, rows["block1_dw"].out_after) == (32, 32)  # depthwise follows its input
    assert (rows["fc"].in_after, rows["fc"].out_after) == (32, 10)  # class outputs never change
    assert "class scores" in rows["fc"].left_out
    assert "stem 64→32" in plan.note(layers) and "fc (the model's class scores)" in plan.note(layers)
    assert plan.as_dict(layers)["groups"]["block4_pw"] == [64, 32]


@pytest.mark.parametrize("npu", ["ethos-u55-128", "ethos-u85-128"])
def test_cycle_plan_reaches_the_target_on_vela_estimates(npu):
    target = Target.default_for(npu)
    groups, layers = ds_cnn_like()
    cost = lambda g: layer_cycles(g, target)
    granule = channel_granule(target)
    plan = cycle_plan(groups, layers, 0.6, granule, cost)
    dense = sum(cost(g) for g in layers)
    reached = sum(cost(g.resized(plan.kept)) for g in layers) / dense
    assert reached == pytest.approx(plan.estimated_fraction)
    assert 0.5 <= reached <= 0.6
    assert all(k % granule == 0 and k >= 16 for k in plan.kept.values())  # whole granules, at least MIN_KEEP of 64
    assert plan == cycle_plan(groups, layers, 0.6, granule, cost)  # the same plan every time
    assert plan.steps and "cycles" in plan.steps[0]
    unreachable = cycle_plan(groups, layers, 0.01, granule, cost)  # every group at its floor: says what it reached
    assert unreachable.estimated_fraction > 0.01 and set(unreachable.kept.values()) == {16}


def test_scores_and_kept_indices():
    w = np.array([[1.0, -1.0], [3.0, 0.0], [0.5, 0.5], [2.0, 2.0]])  # L1 norms 2, 3, 1, 4
    assert list(kept_indices(channel_scores([w], [None]), 2)) == [1, 3]
    # BatchNorm's scale folds in: channel 2's filter is small but its BN scale large
    assert list(kept_indices(channel_scores([w], [np.array([1.0, 1.0, 10.0, 1.0])]), 2)) == [2, 3]
    # two producers of one group (an Add) weigh alike after dividing by their means
    a, b = np.array([[1.0], [2.0], [3.0], [10.0]]), np.array([[500.0], [100.0], [100.0], [100.0]])
    assert list(kept_indices(channel_scores([a, b], [None, None]), 1)) == [3]  # unscaled, b's channel 0 would win
    assert list(kept_indices(np.ones(4), 2)) == [0, 1]  # ties: the lower index


def test_config_modes_and_chain_order():
    assert (ChannelPruneConfig().cycle_target, ChannelPruneConfig().channel_sparsity) == (0.6, None)  # measured default
    assert ChannelPruneConfig(cycle_target=0.5).channel_sparsity is None
    assert ChannelPruneConfig(channel_sparsity=0.5).cycle_target is None
    with pytest.raises(ConfigError, match="cannot be combined"):
        ChannelPruneConfig(channel_sparsity=0.5, cycle_target=0.5)
    with pytest.raises(ConfigError, match="must be in"):
        ChannelPruneConfig(cycle_target=1.5)
    check_chain([ChannelPruneConfig(), PruneConfig(0.5)])
    with pytest.raises(ConfigError, match="channel-prune → prune"):
        check_chain([PruneConfig(0.5), ChannelPruneConfig()])


def test_the_network_estimate_chains_the_layers_and_pools_before_the_classifier(tmp_path):
    from condition.backend.npu_granule import network_tflite
    from condition.backend.tflite_file import read_tflite

    _, layers = ds_cnn_like()
    graph = read_tflite(network_tflite(tmp_path / "net.tflite", layers))
    assert graph.operator_names == ["Conv2DBias"] + ["DepthwiseConv2DBias", "Conv2DBias"] * 4 + [
        "AvgPool", "Reshape", "FullyConnected"]


def test_a_residual_add_is_in_the_network_estimate(tmp_path):
    """A group two producers make (an Add joins them) puts an ADD after the later one, summing its output with
    the earlier one's; without it the estimate missed mobilenet-v2's Add (1,176 NPU cycles on U55-128)."""
    from condition.backend.npu_granule import network_cycles, network_tflite
    from condition.backend.tflite_file import read_tflite
    from condition.channel_plan import with_residual_adds

    groups = [ChannelGroup("a", 16, ("a", "c"), readers=("b", "fc")), ChannelGroup("b", 32, ("b",), readers=("c",)),
              ChannelGroup("fc", 10, ("fc",), left_out="the model's class scores")]
    layers = [LayerGeometry("a", "conv", 1, 16, (3, 3), (1, 1), (8, 8), None, "a"),
              LayerGeometry("b", "conv", 16, 32, (1, 1), (1, 1), (8, 8), "a", "b"),
              LayerGeometry("c", "conv", 32, 16, (1, 1), (1, 1), (8, 8), "b", "a"),
              LayerGeometry("fc", "fc", 16, 10, in_group="a")]
    marked = with_residual_adds(groups, layers)
    assert [g.residual for g in marked] == [0, 0, 2, 0]
    graph = read_tflite(network_tflite(tmp_path / "net.tflite", marked))
    assert graph.operator_names == ["Conv2DBias", "Conv2DBias", "Conv2DBias", "Add", "AvgPool", "Reshape", "FullyConnected"]
    target = Target.default_for("ethos-u55-128")
    assert network_cycles(marked, target) > network_cycles(layers, target)


@pytest.mark.parametrize("npu", ["ethos-u55-128", "ethos-u85-128"])
def test_a_cycle_target_is_checked_on_the_whole_network(npu):
    from condition.backend.npu_granule import network_cycles
    from condition.channel_plan import plan_for

    target = Target.default_for(npu)
    groups, layers = ds_cnn_like()
    plan = plan_for(ChannelPruneConfig(cycle_target=0.5), groups, layers, target)
    dense = network_cycles(layers, target)
    planned = network_cycles([g.resized(plan.kept) for g in layers], target)
    assert (plan.dense_npu_cycles, plan.planned_npu_cycles) == (dense, planned)
    assert 0.45 <= plan.reached_fraction <= 0.5  # the first path point at or under the target: a budget
    assert plan.compiled_points[0] == (0, 1.0) and len(plan.compiled_points) >= 3  # the dense network, then the search
    assert "0.5× dense NPU cycles" in plan.note(layers) and plan.as_dict(layers)["reached_fraction"] == plan.reached_fraction
