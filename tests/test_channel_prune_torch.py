"""torch channel-prune (frontends/torch/channel_prune.py): the groups Torch-Pruning's dependency graph gives
(BatchNorm and depthwise carried, an Add joining its branches, Flatten → Linear), the sliced layers keep
the original's weights at the kept channels, couplings it does not follow are left out and named, and the
pruned model still lowers to the Ethos-U delegate. Small models, random weights: shapes and exact values,
not accuracy."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")

from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from condition import channel_plan  # noqa: E402
from condition.channel_plan import share_plan  # noqa: E402
from condition.frontends.torch.channel_prune import channel_groups, layer_geometry, remove_channels  # noqa: E402


def _random_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorms with statistics and affine parameters away from 1/0, so slicing them wrongly shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g))
                m.running_mean.copy_(torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


class ResCnn(nn.Module):
    """conv+BN+ReLU stem, a block of two convs whose output is added back to the stem's, a head, fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(1, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
        self.a, self.a_bn = nn.Conv2d(32, 24, 3, 1, 1, bias=False), nn.BatchNorm2d(24)
        self.b, self.b_bn = nn.Conv2d(24, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.head, self.head_bn = nn.Conv2d(32, 48, 1, bias=False), nn.BatchNorm2d(48)
        self.fc = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = x + self.b_bn(self.b(F.relu(self.a_bn(self.a(x)))))
        x = F.relu(self.head_bn(self.head(x)))
        return self.fc(torch.flatten(F.avg_pool2d(x, x.shape[-2:], stride=1), 1))


class DwCnn(nn.Module):
    """conv → depthwise → pointwise, each with BatchNorm and ReLU, then pooling and fc."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.stem_bn = nn.Conv2d(1, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32)
        self.dw, self.dw_bn = nn.Conv2d(32, 32, 3, 1, 1, groups=32, bias=False), nn.BatchNorm2d(32)
        self.pw, self.pw_bn = nn.Conv2d(32, 32, 1, bias=False), nn.BatchNorm2d(32)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.stem_bn(self.stem(x)))
        x = F.relu(self.dw_bn(self.dw(x)))
        x = F.relu(self.pw_bn(self.pw(x)))
        return self.fc(torch.flatten(F.avg_pool2d(x, x.shape[-2:], stride=1), 1))


class FlatCnn(nn.Module):
    """conv → ReLU → 2×2 map → Flatten → Linear: each channel is 4 of the Linear's input columns."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, 2, 1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 4, 24)
        self.fc2 = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(F.relu(self.conv(x)), 4)  # 16×16 → 8×8 → 2×2
        return self.fc2(F.relu(self.fc1(self.flatten(x))))


class ShuffleCnn(nn.Module):
    """A channel shuffle (view, transpose, view) and a torch.cat: couplings channel-prune leaves out."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 16, 3, 1, 1)
        self.b = nn.Conv2d(16, 16, 1)
        self.c = nn.Conv2d(1, 16, 3, 1, 1)
        self.d = nn.Conv2d(32, 32, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.a(x))
        n, c, h, w = y.shape
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)
        y = F.relu(self.b(y))
        y = F.relu(self.d(torch.cat([y, F.relu(self.c(x))], 1)))
        return self.fc(torch.flatten(F.avg_pool2d(y, y.shape[-2:], stride=1), 1))


class OffsetCnn(nn.Module):
    """A constant added to a conv's channels (outside Torch-Pruning's graph), then a mean over H and W."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 16, 3, 1, 1)
        self.register_buffer("offset", torch.randn(1, 16, 1, 1))
        self.b = nn.Conv2d(16, 32, 3, 1, 1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.a(x) + self.offset)
        return self.fc(F.relu(self.b(y)).mean((2, 3)))


def _make(cls: type) -> nn.Module:
    torch.manual_seed(0)
    return _random_bn(cls())


X = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
EXAMPLE = torch.zeros(1, 1, 16, 16)


def _kept_of(model: nn.Module, group: channel_plan.ChannelGroup, keep: int) -> np.ndarray:
    """The kept channels as the plan's formula chooses them, from the original model's weights."""
    modules = dict(model.named_modules())
    filters = [modules[p].weight.detach().numpy() for p in group.producers]
    scales = []
    for p in group.producers:
        bn = modules.get(f"{p}_bn")
        scales.append(None if bn is None else (bn.weight / torch.sqrt(bn.running_var + bn.eps)).detach().numpy())
    return channel_plan.kept_indices(channel_plan.channel_scores(filters, scales), keep)


# ---- groups -----------------------------------------------------------------------------------

def test_residual_add_joins_both_branches_producers_into_one_group():
    groups = {g.name: g for g in channel_groups(_make(ResCnn), EXAMPLE)}
    assert list(groups) == ["stem", "a", "head", "fc"]
    assert groups["stem"].producers == ("stem", "b") and groups["stem"].channels == 32
    assert groups["stem"].followers == ("stem_bn", "b_bn") and groups["stem"].readers == ("a", "head")
    assert groups["fc"].left_out == "the model's class scores"
    assert all(groups[n].left_out is None for n in ("stem", "a", "head"))


def test_depthwise_conv_follows_its_input_channels_and_has_one_group_on_both_sides():
    model = _make(DwCnn)
    groups = channel_groups(model, EXAMPLE)
    assert [(g.name, g.channels) for g in groups] == [("stem", 32), ("pw", 32), ("fc", 10)]
    assert groups[0].followers == ("stem_bn", "dw", "dw_bn") and groups[0].readers == ("pw",)
    geometry = {g.name: g for g in layer_geometry(model, EXAMPLE, groups)}
    assert list(geometry) == ["stem", "dw", "pw", "fc"]
    assert (geometry["stem"].in_group, geometry["stem"].out_group, geometry["stem"].input_hw) == (None, "stem", (16, 16))
    assert (geometry["dw"].kind, geometry["dw"].in_group, geometry["dw"].out_group) == ("depthwise", "stem", "stem")
    assert (geometry["pw"].in_group, geometry["pw"].out_group, geometry["pw"].input_hw) == ("stem", "pw", (8, 8))
    assert (geometry["fc"].kind, geometry["fc"].in_group, geometry["fc"].out_group) == ("fc", "pw", None)


# ---- removal ----------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [ResCnn, DwCnn])
def test_share_plan_shrinks_every_coupled_layer_and_the_model_runs(cls):
    model = _make(cls)
    groups = channel_groups(model, EXAMPLE)
    plan = share_plan(groups, 0.5, 8)
    pruned = remove_channels(model, EXAMPLE, groups, plan.kept)
    modules = dict(pruned.named_modules())
    for g in groups:
        keep = plan.kept_of(g.name)
        for p in g.producers:
            assert modules[p].weight.shape[0] == keep, p
        for f in g.followers:
            assert (modules[f].num_features if isinstance(modules[f], nn.BatchNorm2d) else modules[f].out_channels) == keep, f
        for r in g.readers:
            assert modules[r].weight.shape[1] == keep, r
    assert pruned(X).shape == (2, 10)
    assert model.stem.out_channels == 32  # the caller's model is untouched
    after = layer_geometry(pruned, EXAMPLE)
    assert [(g.in_channels, g.out_channels) for g in after] == \
        [(r.in_after, r.out_after) for r in plan.layer_rows(layer_geometry(model, EXAMPLE, groups))]


def test_keeping_every_channel_gives_bit_identical_outputs():
    model = _make(ResCnn)
    groups = channel_groups(model, EXAMPLE)
    same = remove_channels(model, EXAMPLE, groups, {g.name: g.channels for g in groups})
    with torch.no_grad():
        assert torch.equal(same(X), model(X))


def test_batchnorm_is_sliced_with_its_conv_and_keeps_the_kept_channels_activations():
    model = _make(DwCnn)
    groups = channel_groups(model, EXAMPLE)
    stem = groups[0]
    kept = _kept_of(model, stem, 16)
    pruned = remove_channels(model, EXAMPLE, groups, {"stem": 16})
    for name in ("weight", "bias", "running_mean", "running_var"):
        assert torch.equal(getattr(pruned.stem_bn, name), getattr(model.stem_bn, name)[kept]), name
    assert torch.equal(pruned.stem.weight, model.stem.weight[kept])
    assert torch.equal(pruned.dw.weight, model.dw.weight[kept]) and pruned.dw.groups == 16
    assert torch.equal(pruned.pw.weight, model.pw.weight[:, kept])
    seen = {}
    for m, key in ((model, "dense"), (pruned, "pruned")):
        handle = m.dw_bn.register_forward_hook(lambda mod, i, out, key=key: seen.__setitem__(key, out))
        with torch.no_grad():
            m(X)
        handle.remove()
    assert torch.equal(seen["pruned"], seen["dense"][:, kept])


def test_flatten_then_linear_keeps_each_kept_channels_positions():
    model = _make(FlatCnn)
    groups = {g.name: g for g in channel_groups(model, EXAMPLE)}
    assert groups["conv"].readers == ("fc1",) and groups["conv"].left_out is None
    geometry = {g.name: g for g in layer_geometry(model, EXAMPLE)}
    assert (geometry["fc1"].in_group, geometry["fc1"].in_per_channel, geometry["fc1"].in_channels) == ("conv", 4, 64)
    kept = _kept_of(model, groups["conv"], 8)
    pruned = remove_channels(model, EXAMPLE, list(groups.values()), {"conv": 8})
    columns = [c * 4 + p for c in kept for p in range(4)]  # torch flattens channel-major: channel c is columns 4c..4c+3
    assert torch.equal(pruned.fc1.weight, model.fc1.weight[:, columns])
    removed = [c for c in range(16) if c not in set(kept.tolist())]

    def zero_removed(mod, inputs, out):
        out = out.clone()
        out[:, removed] = 0
        return out

    handle = model.conv.register_forward_hook(zero_removed)
    with torch.no_grad():
        expected = model(X)
    handle.remove()
    with torch.no_grad():
        assert torch.allclose(pruned(X), expected, atol=1e-6)


def test_a_coupling_it_cannot_follow_is_left_out_and_named_never_broken():
    model = _make(ShuffleCnn)
    groups = {g.name: g for g in channel_groups(model, EXAMPLE)}
    assert "reshaped" in groups["a"].left_out  # the channel shuffle's view
    assert "torch.cat" in groups["b"].left_out and "torch.cat" in groups["c"].left_out
    assert groups["d"].left_out is None
    plan = share_plan(list(groups.values()), 0.5, 8)
    assert set(plan.kept) == {"d"} and {"a", "b", "c", "fc"} <= set(plan.left_out)
    pruned = remove_channels(model, EXAMPLE, list(groups.values()), plan.kept)
    assert (pruned.a.out_channels, pruned.b.out_channels, pruned.c.out_channels, pruned.d.out_channels) == (16, 16, 16, 16)
    assert pruned(X).shape == (2, 10)
    assert "reshaped" in plan.note(layer_geometry(model, EXAMPLE))


def test_a_constant_added_to_the_channels_is_found_by_a_trial_removal_and_left_out():
    model = _make(OffsetCnn)
    groups = {g.name: g for g in channel_groups(model, EXAMPLE)}
    assert groups["a"].left_out.startswith("removing its channels does not run (RuntimeError")
    assert groups["b"].left_out is None and groups["b"].readers == ("fc",)  # a mean over H, W keeps each channel
    plan = share_plan(list(groups.values()), 0.5, 8)
    pruned = remove_channels(model, EXAMPLE, list(groups.values()), plan.kept)
    assert (pruned.a.out_channels, pruned.b.out_channels, pruned.fc.in_features) == (16, 16, 16)
    assert pruned(X).shape == (2, 10)


# ---- the built-ins: the same groups as the Keras side ---------------------------------------

def _builtin(name: str) -> tuple[nn.Module, torch.Tensor]:
    from condition.frontends.torch.models import build_model
    from condition.models import parse_model_spec

    return build_model(parse_model_spec(name), (28, 28), 10, seed=0), torch.zeros(1, 1, 28, 28)


def _summary(groups) -> list[tuple]:
    return [(g.name, g.channels, g.producers, g.left_out) for g in groups]


def test_ds_cnn_groups():
    model, example = _builtin("ds-cnn")
    groups = channel_groups(model, example)
    assert _summary(groups) == [("stem", 64, ("stem",), None)] + [
        (f"block{i}_pw", 64, (f"block{i}_pw",), None) for i in range(1, 5)] + [("fc", 10, ("fc",), "the model's class scores")]
    assert groups[0].followers == ("stem_bn", "block1_dw", "block1_dw_bn")


def test_mobilenet_v2_groups_join_the_projects_an_add_couples():
    model, example = _builtin("mobilenet-v2")
    groups = channel_groups(model, example)
    assert _summary(groups) == [
        ("stem", 16, ("stem",), None), ("block1_project", 8, ("block1_project",), None),
        ("block2_expand", 48, ("block2_expand",), None), ("block2_project", 16, ("block2_project", "block3_project"), None),
        ("block3_expand", 96, ("block3_expand",), None), ("head", 128, ("head",), None),
        ("fc", 10, ("fc",), "the model's class scores")]
    pruned = remove_channels(model, example, groups, share_plan(groups, 0.5, 8).kept)
    assert [c.filters for c in pruned.spec.convs()] == [getattr(pruned, c.name).out_channels for c in pruned.spec.convs()]
    assert pruned.head.out_channels == 64 and pruned.fc.in_features == 64 and pruned.block3_project.out_channels == 8


# ---- the handler, then int8 and the Ethos-U delegate ---------------------------------------------

def test_handler_plans_with_the_targets_granule_fine_tunes_and_lowers_the_smaller_layers_to_the_npu():
    """The registered handler (plan_for with Vela's granule, one short epoch), PTQ and the real lowering
    (about 6 s): every op delegated, and the delegate's int8 weights have the pruned shapes."""
    import tempfile
    from pathlib import Path

    from condition.backend.target import Target
    from condition.datasets import Dataset
    from condition.frontend import StepContext
    from condition.frontends.torch import REGISTRY
    from condition.frontends.torch import frontend  # noqa: F401  (registers the techniques)
    from condition.frontends.torch.export import example_input, lower, lowered_modules
    from condition.techniques import ChannelPruneConfig, PostTrainingQuantConfig

    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 255, (64, 16, 16), dtype=np.uint8), rng.integers(0, 10, 64)
    data = Dataset("random", x, y, x[:16], y[:16])
    notes, fields = [], {}
    model = _make(ResCnn)
    pruned = REGISTRY.apply(model, ChannelPruneConfig(channel_sparsity=0.5, fine_tune_epochs=1),
                            StepContext(data, Target(), 0, note=notes.append, record=fields.__setitem__))
    granule = fields["channel_plan"]["granule"]
    assert granule >= 1 and fields["channel_plan"]["groups"]["stem"] == [32, max(granule, 16 // granule * granule)]
    assert model.stem.out_channels == 32 and pruned.stem.out_channels < 32 and pruned.b.out_channels == pruned.stem.out_channels
    assert "channel-prune 50 %" in notes[0] and "fc (the model's class scores)" in notes[0]
    int8 = REGISTRY.apply(pruned, PostTrainingQuantConfig(calibration_images=16), StepContext(data, Target(), 0))
    with tempfile.TemporaryDirectory() as out:
        lowered = lower(int8, example_input((1, 16, 16)), Target(), Path(out))
    assert lowered.placement.cpu_ops == [] and lowered.placement.delegates == 1
    (delegate,) = lowered_modules(lowered.eval_program).values()
    program = delegate.original_module
    tensors = [*program.state_dict.values(), *program.constants.values()]
    weights = sorted(tuple(t.shape) for t in tensors if t.dtype == torch.int8)
    expected = sorted(tuple(getattr(pruned, n).weight.shape) for n in ("stem", "a", "b", "head", "fc"))
    assert weights == expected


def test_mlp_groups_and_a_graph_without_modules_has_none():
    model, example = _builtin("mlp")
    assert _summary(channel_groups(model, example)) == [
        ("fc1", 512, ("fc1",), None), ("fc2", 256, ("fc2",), None), ("fc3", 10, ("fc3",), "the model's class scores")]
    graph = torch.export.export(_make(DwCnn), (torch.zeros(2, 1, 16, 16),)).module()  # a .pt2's module: ops, not modules
    assert channel_groups(graph, EXAMPLE) == [] and layer_geometry(graph, EXAMPLE) == []
