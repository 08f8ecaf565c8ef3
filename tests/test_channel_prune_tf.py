"""Channel pruning on the tf frontend (frontends/tf/channel_prune.py): the groups it follows (BatchNorm, a
depthwise conv, a residual Add, Flatten → Dense), the weights it slices, what it leaves out and why, and the
smaller int8 .tflite. Small random models: these check the graph and the weights, not accuracy."""
from __future__ import annotations

import numpy as np
import pytest

from condition.backend.target import Target
from condition.backend.tflite_file import INT8, read_tflite
from condition.channel_plan import share_plan
from condition.frontend import StepContext
from condition.frontends.tf import keras_modules
from condition.frontends.tf.channel_prune import (CLASS_SCORES, channel_groups, group_indices, layer_geometry,
                                                  remove_channels)
from condition.frontends.tf.export import to_int8_tflite
from condition.frontends.tf.frontend import FRONTEND
from condition.frontends.tf.models import build_builtin
from condition.frontends.tf.train import TrainData
from condition.techniques import ChannelPruneConfig


def _randomise_batchnorm(model) -> None:
    """BatchNorm statistics and scales away from 0/1, so slicing mistakes show."""
    _, keras, _ = keras_modules()
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.2, 2.0, c), rng.normal(size=c), rng.normal(size=c), rng.uniform(0.5, 2.0, c)])


def residual_cnn():
    """stem conv → (1x1 mid → 1x1 proj) + stem (an Add) → head conv → pool, flatten → fc."""
    _, keras, _ = keras_modules()
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = L.Input((16, 16, 3), name="input")
    x = L.ReLU(name="stem_relu")(L.BatchNormalization(name="stem_bn")(L.Conv2D(32, 3, 2, "same", use_bias=False, name="stem")(inputs)))
    y = L.ReLU(name="mid_relu")(L.BatchNormalization(name="mid_bn")(L.Conv2D(32, 1, name="mid")(x)))
    y = L.BatchNormalization(name="proj_bn")(L.Conv2D(32, 1, use_bias=False, name="proj")(y))
    x = L.Add(name="add")([x, y])
    x = L.ReLU(name="head_relu")(L.BatchNormalization(name="head_bn")(L.Conv2D(48, 1, use_bias=False, name="head")(x)))
    x = L.Flatten(name="flatten")(L.AveragePooling2D((8, 8), strides=1, name="pool")(x))
    model = keras.Model(inputs, L.Dense(10, name="fc")(x))
    _randomise_batchnorm(model)
    return model


def depthwise_cnn():
    """conv → depthwise → pointwise, each with BatchNorm and ReLU → pool, flatten → fc."""
    _, keras, _ = keras_modules()
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = L.Input((12, 12, 1), name="input")
    x = L.ReLU()(L.BatchNormalization(name="stem_bn")(L.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(inputs)))
    x = L.ReLU()(L.BatchNormalization(name="dw_bn")(L.DepthwiseConv2D(3, 2, "same", name="dw")(x)))
    x = L.ReLU()(L.BatchNormalization(name="pw_bn")(L.Conv2D(32, 1, use_bias=False, name="pw")(x)))
    x = L.Flatten(name="flatten")(L.AveragePooling2D((6, 6), strides=1, name="pool")(x))
    model = keras.Model(inputs, L.Dense(10, name="fc")(x))
    _randomise_batchnorm(model)
    return model


def _images(shape: tuple[int, ...], n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(n, *shape)).astype(np.float32)


def _by_name(groups):
    return {g.name: g for g in groups}


def _kernel(model, name: str) -> np.ndarray:
    return model.get_layer(name).get_weights()[0]


def test_residual_add_couples_both_branches_and_shapes_shrink():
    model = residual_cnn()
    groups = _by_name(channel_groups(model))
    assert list(groups) == ["stem", "mid", "head", "fc"]
    stem = groups["stem"]
    assert stem.producers == ("stem", "proj") and stem.channels == 32 and stem.left_out is None
    assert stem.followers == ("stem_bn", "proj_bn") and stem.readers == ("mid", "head")
    assert groups["fc"].left_out == CLASS_SCORES
    geometry = {g.name: g for g in layer_geometry(model)}
    assert (geometry["proj"].in_group, geometry["proj"].out_group) == ("mid", "stem")
    assert (geometry["stem"].in_group, geometry["stem"].input_hw) == (None, (16, 16))
    assert geometry["fc"].out_group is None

    plan = share_plan(list(groups.values()), 0.5, 8)
    assert plan.kept == {"stem": 16, "mid": 16, "head": 24}
    pruned = remove_channels(model, list(groups.values()), plan.kept)
    assert _kernel(model, "stem").shape == (3, 3, 3, 32)  # the caller's model is untouched
    shapes = {n: _kernel(pruned, n).shape for n in ("stem", "mid", "proj", "head", "fc")}
    assert shapes == {"stem": (3, 3, 3, 16), "mid": (1, 1, 16, 16), "proj": (1, 1, 16, 16), "head": (1, 1, 16, 24), "fc": (24, 10)}
    assert pruned(_images((16, 16, 3))).shape == (4, 10)


def test_depthwise_follows_its_input_and_the_int8_tflite_is_smaller(tmp_path):
    model = depthwise_cnn()
    groups = channel_groups(model)
    stem = _by_name(groups)["stem"]
    assert stem.followers == ("stem_bn", "dw", "dw_bn") and stem.readers == ("pw",)
    dw = {g.name: g for g in layer_geometry(model)}["dw"]
    assert (dw.kind, dw.in_group, dw.out_group, dw.input_hw, dw.stride) == ("depthwise", "stem", "stem", (12, 12), (2, 2))

    pruned = remove_channels(model, groups, share_plan(groups, 0.5, 8).kept)
    assert [w.shape for w in pruned.get_layer("dw").get_weights()] == [(3, 3, 16, 1), (16,)]
    assert _kernel(pruned, "pw").shape == (1, 1, 16, 16)
    path = to_int8_tflite(pruned, _images((12, 12, 1), 8), tmp_path / "model_int8.tflite")
    weights = sorted(t.shape for t in read_tflite(path).tensors if t.type == INT8 and t.data is not None and len(t.shape) >= 2)
    # TFLite: conv (out, kh, kw, in), depthwise (1, kh, kw, channels), fully connected (out, in)
    assert weights == sorted([(16, 3, 3, 1), (1, 3, 3, 16), (16, 1, 1, 16), (10, 16)])


@pytest.mark.parametrize("make, shape", [(residual_cnn, (16, 16, 3)), (depthwise_cnn, (12, 12, 1))])
def test_keeping_every_channel_gives_identical_outputs(make, shape):
    model = make()
    groups = channel_groups(model)
    same = remove_channels(model, groups, {g.name: g.channels for g in groups if not g.left_out})
    x = _images(shape)
    assert np.array_equal(same(x).numpy(), model(x).numpy())


def test_batchnorm_is_sliced_with_its_conv():
    _, keras, _ = keras_modules()
    model = residual_cnn()
    groups = channel_groups(model)
    stem = _by_name(groups)["stem"]
    pruned = remove_channels(model, groups, {"stem": 16})
    kept = group_indices(model, stem, 16)
    assert len(kept) == 16 and np.all(np.diff(kept) > 0)
    for bn in ("stem_bn", "proj_bn"):
        for new, old in zip(pruned.get_layer(bn).get_weights(), model.get_layer(bn).get_weights(), strict=True):
            assert np.array_equal(new, old[kept])
    x = _images((16, 16, 3))
    after = lambda m: keras.Model(m.input, m.get_layer("stem_bn").output)(x).numpy()  # noqa: E731
    np.testing.assert_allclose(after(pruned), after(model)[..., kept], rtol=1e-5, atol=1e-6)


def test_flatten_then_dense_keeps_each_kept_channel_at_every_position():
    _, keras, _ = keras_modules()
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = L.Input((4, 4, 2))
    x = L.Flatten(name="flatten")(L.Conv2D(8, 3, 2, "same", name="conv")(inputs))  # a 2×2 map of 8 channels
    model = keras.Model(inputs, L.Dense(5, name="fc")(x))
    groups = channel_groups(model)
    assert _by_name(groups)["conv"].readers == ("fc",)
    assert {g.name: g.in_per_channel for g in layer_geometry(model)}["fc"] == 4
    pruned = remove_channels(model, groups, {"conv": 4})
    kept = group_indices(model, _by_name(groups)["conv"], 4)
    rows = [(h * 2 + w) * 8 + c for h in range(2) for w in range(2) for c in kept]  # NHWC flatten order
    assert np.array_equal(_kernel(pruned, "fc"), _kernel(model, "fc")[rows])
    # the same function as the original with the removed channels' filters zeroed
    kernel, bias = model.get_layer("conv").get_weights()
    dropped = np.setdiff1d(np.arange(8), kept)
    kernel[..., dropped], bias[dropped] = 0.0, 0.0
    model.get_layer("conv").set_weights([kernel, bias])
    x = _images((4, 4, 2))
    np.testing.assert_allclose(pruned(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)


def test_a_concatenate_and_a_shared_layer_are_left_out_with_their_reasons():
    _, keras, _ = keras_modules()
    L = keras.layers
    keras.utils.set_random_seed(0)
    inputs = L.Input((8, 8, 1))
    a = L.Conv2D(32, 3, padding="same", name="a")(inputs)
    b = L.Conv2D(32, 3, padding="same", name="b")(inputs)
    x = L.Conv2D(32, 1, name="after")(L.Concatenate(name="concat")([a, b]))
    shared = L.Conv2D(32, 1, name="shared")  # called twice: its weights serve both calls
    side = L.Conv2D(32, 1, name="side")(inputs)
    x = L.Add(name="add")([x, shared(side), shared(L.ReLU(name="side_relu")(side))])
    model = keras.Model(inputs, L.Dense(3, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))
    groups = _by_name(channel_groups(model))
    assert sorted(groups) == ["a", "after", "b", "fc", "side"]  # the shared conv makes no group
    assert groups["a"].left_out == groups["b"].left_out == "read by Concatenate concat (not followed)"
    assert groups["side"].left_out == "read by Conv2D shared, a layer called 2 times (not followed)"
    assert groups["after"].left_out == "added by Add add to channels that stay (the image or a layer not followed)"  # the shared conv's

    keras.utils.set_random_seed(0)
    x = L.Conv2D(32, 1, name="after")(L.Concatenate(name="concat")([L.Conv2D(32, 3, padding="same", name="a")(inputs),
                                                                   L.Conv2D(32, 3, padding="same", name="b")(inputs)]))
    model = keras.Model(inputs, L.Dense(3, name="fc")(L.GlobalAveragePooling2D(name="gap")(x)))
    groups = channel_groups(model)
    plan = share_plan(groups, 0.5, 8)
    assert plan.kept == {"after": 16} and plan.left_out["a"] == "read by Concatenate concat (not followed)"
    pruned = remove_channels(model, groups, plan.kept)
    assert _kernel(pruned, "a").shape == (3, 3, 1, 32) and _kernel(pruned, "after").shape == (1, 1, 64, 16)
    assert pruned(_images((8, 8, 1))).shape == (4, 3)


def _summary(groups):
    return [(g.name, g.channels, g.producers, g.left_out) for g in groups]


def test_builtin_models_groups():
    """The same groups as the torch side's for the networks of condition/models.py."""
    ds = channel_groups(build_builtin("ds-cnn", (28, 28), 10, 0))
    assert _summary(ds) == [("stem", 64, ("stem",), None)] + [(f"block{i}_pw", 64, (f"block{i}_pw",), None) for i in range(1, 5)] \
        + [("fc", 10, ("fc",), CLASS_SCORES)]
    assert _by_name(ds)["stem"].followers == ("stem_bn", "block1_dw", "block1_dw_bn")
    mobilenet = channel_groups(build_builtin("mobilenet-v2", (28, 28, 1), 10, 0))
    # block2 expands block1's 8 channels 6×: 48; block3's residual Add joins block2's and block3's projections
    assert _summary(mobilenet) == [("stem", 16, ("stem",), None), ("block1_project", 8, ("block1_project",), None),
                                   ("block2_expand", 48, ("block2_expand",), None),
                                   ("block2_project", 16, ("block2_project", "block3_project"), None),
                                   ("block3_expand", 96, ("block3_expand",), None), ("head", 128, ("head",), None),
                                   ("fc", 10, ("fc",), CLASS_SCORES)]
    assert _by_name(mobilenet)["block2_project"].readers == ("block3_expand", "head")
    geometry = {g.name: g for g in layer_geometry(build_builtin("mobilenet-v2", (28, 28, 1), 10, 0))}
    assert geometry["stem"].input_hw == (28, 28)  # the unpadded input (the ZeroPadding2D is Vela's padding)
    mlp = build_builtin("mlp", (28, 28), 10, 0)
    assert _summary(channel_groups(mlp)) == [("dense", 512, ("dense",), None), ("dense_1", 256, ("dense_1",), None),
                                             ("dense_2", 10, ("dense_2",), CLASS_SCORES)]
    pruned = remove_channels(mlp, channel_groups(mlp), {"dense": 256, "dense_1": 128})  # a Sequential rebuilds too
    assert [_kernel(pruned, n).shape for n in ("dense", "dense_1", "dense_2")] == [(784, 256), (256, 128), (128, 10)]


def test_handler_plans_notes_records_and_fine_tunes():
    model = residual_cnn()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16, 16, 3)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    data = TrainData(x, y, x[:16], y[:16], seed=0, batch_size=32)
    notes, fields = [], {}
    pruned = FRONTEND.registry.apply(model, ChannelPruneConfig(channel_sparsity=0.5, fine_tune_epochs=1),
                                     StepContext(data, Target(), 0, note=notes.append, record=fields.__setitem__))
    granule = fields["channel_plan"]["granule"]
    assert fields["channel_plan"]["groups"]["stem"] == [32, max(granule, 16 // granule * granule)]
    assert _kernel(pruned, "stem").shape[-1] == fields["channel_plan"]["groups"]["stem"][1]
    assert len(notes) == 1 and notes[0].startswith("channel-prune 50 % of each layer's channels")
    kept = {name: after for name, (before, after) in fields["channel_plan"]["groups"].items() if after != before}
    untrained = remove_channels(model, channel_groups(model), kept)
    assert _kernel(untrained, "fc").shape == _kernel(pruned, "fc").shape
    assert not np.array_equal(_kernel(untrained, "fc"), _kernel(pruned, "fc"))  # fine-tuned after the removal


def test_a_subclassed_model_is_named_and_left_as_it_is():
    _, keras, _ = keras_modules()
    L = keras.layers

    class Net(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.conv = L.Conv2D(32, 3, name="conv")
            self.fc = L.Dense(3, name="fc")

        def call(self, x):
            return self.fc(L.Flatten()(self.conv(x)))

    net = Net()
    net(_images((5, 5, 1)))
    groups = channel_groups(net)
    assert [(g.name, g.channels) for g in groups] == [("conv", 32), ("fc", 3)]
    assert all(g.left_out.startswith("a subclassed Keras model") for g in groups)
    assert share_plan(groups, 0.5, 8).kept == {}
