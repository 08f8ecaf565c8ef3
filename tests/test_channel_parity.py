"""Channel pruning plans the same widths on both frontends: the built-ins' groups and layer shapes agree, so the
same options give the same per-layer channel counts (issue 22's parity). No training: only the graphs."""
from __future__ import annotations

import pytest

from condition.backend.npu_granule import layer_cycles
from condition.backend.target import Target
from condition.channel_plan import cycle_plan, share_plan
from condition.models import parse_model_spec


def tf_view(model_name: str, shape: tuple[int, ...]):
    from condition.frontends.tf.channel_prune import channel_groups, layer_geometry
    from condition.frontends.tf.models import load_model

    model = load_model(parse_model_spec(model_name), shape, 10, 0)
    return channel_groups(model), layer_geometry(model)


def torch_view(model_name: str, shape: tuple[int, ...]):
    from condition.frontends.torch.channel_prune import channel_groups, layer_geometry
    from condition.frontends.torch.export import example_input
    from condition.frontends.torch.models import build_model, input_shape_nchw

    model = build_model(parse_model_spec(model_name), shape, 10, 0)
    example = example_input(input_shape_nchw(shape))[0]
    groups = channel_groups(model, example)
    return groups, layer_geometry(model, example, groups)


def shapes(geometry):
    """What Vela's cost depends on, position by position (names differ: Keras `dense` vs torch `fc1`)."""
    return [(g.kind, g.in_channels, g.out_channels, g.kernel, g.stride, g.input_hw, g.in_per_channel) for g in geometry]


def coupling(groups, geometry):
    """Each group by position: channels, whether it is prunable, and which layers (by position) produce, read it."""
    index = {g.name: i for i, g in enumerate(geometry)}
    order = {group.name: i for i, group in enumerate(groups)}
    at = lambda name: order.get(name)
    layers = [(g.kind, at(g.in_group) if g.in_group else None, at(g.out_group) if g.out_group else None) for g in geometry]
    return ([(g.channels, g.left_out is None, sorted(index[p] for p in g.producers if p in index)) for g in groups], layers)


@pytest.mark.parametrize("model_name, shape", [("ds-cnn", (28, 28)), ("mobilenet-v2", (32, 32, 3)), ("mlp", (28, 28))])
def test_both_frontends_see_the_same_groups_and_shapes(model_name, shape):
    tf_groups, tf_geometry = tf_view(model_name, shape)
    torch_groups, torch_geometry = torch_view(model_name, shape)
    assert shapes(tf_geometry) == shapes(torch_geometry)
    assert coupling(tf_groups, tf_geometry) == coupling(torch_groups, torch_geometry)
    for granule in (8, 16):
        tf_plan, torch_plan = share_plan(tf_groups, 0.5, granule), share_plan(torch_groups, 0.5, granule)
        assert shapes(g.resized(tf_plan.kept) for g in tf_geometry) == shapes(g.resized(torch_plan.kept) for g in torch_geometry)
    if model_name == "mlp":
        return  # its cycle plan walks 512 widths in steps of 8: the CNNs show the same
    target = Target.default_for("ethos-u55-128")
    cost = lambda g: layer_cycles(g, target)
    tf_plan, torch_plan = cycle_plan(tf_groups, tf_geometry, 0.6, 8, cost), cycle_plan(torch_groups, torch_geometry, 0.6, 8, cost)
    assert tf_plan.estimated_fraction == torch_plan.estimated_fraction
    assert [r.out_after for r in tf_plan.layer_rows(tf_geometry)] == [r.out_after for r in torch_plan.layer_rows(torch_geometry)]


def test_tf_builtin_cnn_on_28x28_images_has_no_input_copy_and_the_shape_only_networks_cycles(tmp_path):
    """tf's ds-cnn takes (28, 28, 1) images, so Vela compiles no copy of the graph's input (a Keras Reshape of
    it cost 944 NPU cycles on U55-128, the whole tf/torch gap at 28×28), and its NPU cycles equal those of the
    framework-free network of its shapes (backend/npu_granule.network_cycles), as torch's dense ds-cnn does
    (39,744 on U55-128 in bench/results/channel.md)."""
    import numpy as np

    from condition.backend.npu_granule import network_cycles
    from condition.backend.vela import compile_tflite
    from condition.frontends.tf.export import to_int8_tflite
    from condition.frontends.tf.models import load_model

    model = load_model(parse_model_spec("ds-cnn"), (28, 28), 10, 0)
    assert tuple(model.input_shape[1:]) == (28, 28, 1)
    calibration = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    tflite = to_int8_tflite(model, calibration, tmp_path / "ds-cnn.tflite")
    target = Target.default_for("ethos-u55-128")
    estimate = compile_tflite(tflite, target, tmp_path / "vela").estimate
    assert "MemoryCopy" not in [r.operator for r in estimate.per_layer]
    _, geometry = tf_view("ds-cnn", (28, 28))
    assert estimate.npu_cycles == network_cycles(geometry, target)
