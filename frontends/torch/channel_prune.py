"""Channel pruning on the torch frontend: whole output channels removed, with everything that carries
or reads them, so layers do fewer MACs (the plan, shared with tf: condition/channel_plan.py).

    groups = channel_groups(model, example)        # coupled channels, named after their first producer
    geometry = layer_geometry(model, example, groups)
    pruned = remove_channels(model, example, groups, share_plan(groups, 0.5, 16).kept)

Torch-Pruning's DependencyGraph (traced from autograd) says which layers a conv's output channels couple
to: its BatchNorm, a depthwise conv and its BatchNorm, every branch an Add joins, the Linear after a
Flatten (each channel's H·W columns), the layers that read them. Its `Group.prune()` slices them all.
What its graph reaches is checked against the couplings this module follows (conv, depthwise, BatchNorm,
Linear, element-wise activations, pooling, Add, Flatten → Linear); a group that reaches anything else
(torch.cat, a view other than Flatten, a permute, a grouped conv, a custom op, the model's output) keeps
all its channels and says why, so a model we cannot follow is left as it was instead of broken. A trial
removal of one channel per group then runs the model once: what the graph does not see (a constant or the
image added to a group's channels) fails there, and that group is left out too.

The caller's model is never changed; `remove_channels` returns a pruned deep copy.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from condition import channel_plan
from condition.channel_plan import ChannelGroup, LayerGeometry
from condition.datasets import Dataset
from condition.fine_tuning import fine_tune_epochs
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch.export import example_input as zeros_input
from condition.frontends.torch.models import input_shape_nchw
from condition.frontends.torch.train import train
from condition.techniques import ChannelPruneConfig

CLASS_SCORES = "the model's class scores"
# autograd ops a channel passes through unchanged, channel for channel (their names without Backward<N>)
CHANNELWISE_OPS = ("Relu", "Clamp", "Hardtanh", "Add", "Sub", "Mul", "Div", "Neg", "AvgPool2D", "MaxPool2D",
                   "MaxPool2DWithIndices", "AdaptiveAvgPool2D", "AdaptiveMaxPool2D", "Sigmoid", "Tanh", "Silu",
                   "Hardswish", "Hardsigmoid", "Gelu", "LeakyRelu", "Elu", "NativeDropout", "Clone", "Threshold",
                   "UpsampleNearest2D", "UpsampleBilinear2D")


def _op_name(node: tp.Node) -> str:
    """`Clamp` for ClampBackward1: the autograd op without its Backward suffix."""
    name = node.grad_fn.name() if node.grad_fn is not None and hasattr(node.grad_fn, "name") else type(node.module).__name__
    return name.split("Backward")[0]


def _is_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups == 1


def _is_depthwise(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels == m.out_channels


BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def _weighted(m: nn.Module) -> bool:
    return isinstance(m, (nn.Conv2d, nn.Linear))


@dataclass
class _Trace:
    """What one forward pass saw: weighted layers and BatchNorms in call order, with their inputs' shapes."""

    order: list[nn.Module]
    input_shapes: dict[nn.Module, tuple[int, ...]]
    calls: dict[nn.Module, int]


def _trace(model: nn.Module, example: torch.Tensor) -> _Trace:
    trace = _Trace([], {}, {})

    def hook(module: nn.Module, inputs: tuple, output: object) -> None:
        if module not in trace.calls:
            trace.order.append(module)
            trace.input_shapes[module] = tuple(inputs[0].shape)
        trace.calls[module] = trace.calls.get(module, 0) + 1

    handles = [m.register_forward_hook(hook) for m in model.modules() if _weighted(m) or isinstance(m, BATCHNORMS)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return trace


def _dependency_graph(model: nn.Module, example: torch.Tensor) -> tp.DependencyGraph:
    was_training = model.training
    try:
        return tp.DependencyGraph().build_dependency(model, example_inputs=example)
    finally:
        model.train(was_training)


def _out_fn(m: nn.Module):
    return tp.prune_linear_out_channels if isinstance(m, nn.Linear) else tp.prune_conv_out_channels


def _reduces_channels(node: tp.Node) -> bool:
    """A mean or sum over the channel dimension (over H and W it keeps each channel apart)."""
    dims = getattr(node.grad_fn, "_saved_dim", None)
    size = getattr(node.grad_fn, "_saved_self_sym_sizes", None)
    if dims is None or size is None:
        return True
    ndim = len(size)
    dims = [d - 2**64 if d >= 2**63 else d for d in (dims if isinstance(dims, tuple) else (dims,))]
    return not dims or ndim < 2 or any(d % ndim == 1 for d in dims)


def _unfollowed(node: tp.Node, channels: int) -> str | None:
    """Why channel-prune cannot follow the group through `node` (None: it can)."""
    m = node.module
    kind = node.type
    if kind in (tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.DEPTHWISE_CONV):
        if _is_conv(m) or _is_depthwise(m):
            return None
        if isinstance(m, nn.Conv2d):
            return f"they reach a grouped convolution (groups={m.groups})"
        return f"they reach a {type(m).__name__}, which channel-prune does not follow"
    if kind == tp.ops.OPTYPE.BN:
        return None if isinstance(m, BATCHNORMS) else f"they reach a {type(m).__name__}, which channel-prune does not follow"
    if kind == tp.ops.OPTYPE.LINEAR:
        return None
    if kind == tp.ops.OPTYPE.ELEMENTWISE:
        op = _op_name(node)
        if op in CHANNELWISE_OPS:
            return None
        if op in ("Mean", "Sum") and not _reduces_channels(node):
            return None
        if op == "T" and not node.inputs:  # a Linear's weight transposed for its matmul, not the data
            return None
        return f"its channels pass through {op}, which channel-prune does not follow"
    if kind == tp.ops.OPTYPE.RESHAPE:
        # a Flatten straight into Linears (tp maps each channel to its H·W columns); any other view is not followed
        size = tuple(getattr(node.grad_fn, "_saved_self_sym_sizes", None) or getattr(node.grad_fn, "_saved_self_sizes", ()) or ())
        readers = node.outputs
        if (len(size) in (2, 4) and size[1] == channels and readers
                and all(isinstance(r.module, nn.Linear) and r.module.in_features == math.prod(size[1:]) for r in readers)):
            return None
        return f"its channels are reshaped ({_op_name(node)} of {list(size)}) other than a Flatten before a Linear"
    if kind == tp.ops.OPTYPE.CONCAT:
        return "joined with other channels by torch.cat"
    if kind in (tp.ops.OPTYPE.SPLIT, tp.ops.OPTYPE.UNBIND, tp.ops.OPTYPE.SLICE, tp.ops.OPTYPE.EXPAND):
        return f"its channels are split or sliced ({_op_name(node)})"
    return f"its channels reach {type(m).__name__}, which channel-prune does not follow"


def _group_of(dg: tp.DependencyGraph, producer: nn.Module, names: dict[nn.Module, str], trace: _Trace,
              outputs: set[tp.Node]) -> tuple[list[nn.Module], list[nn.Module], list[nn.Module], str | None]:
    """(producers, followers, readers, why left out) of `producer`'s output channels."""
    channels = producer.out_features if isinstance(producer, nn.Linear) else producer.out_channels
    group = dg.get_pruning_group(producer, _out_fn(producer), idxs=[0])
    producers, followers, readers, reasons = [], [], [], []
    for dep, _ in group:
        node, m = dep.target, dep.target.module
        is_out = dep.handler.__name__ != "prune_in_channels"
        reason = _unfollowed(node, channels)
        if reason:
            reasons.append(reason)
        elif _is_depthwise(m) or isinstance(m, BATCHNORMS):
            followers.append(m)
        elif _weighted(m):
            (producers if is_out else readers).append(m)
        if node in outputs and is_out:
            reasons.insert(0, CLASS_SCORES if _weighted(m) else "they are an output of the model")
    for m in producers + followers + readers:
        if m in names and trace.calls.get(m, 0) > 1:
            reasons.append(f"{names[m]} is called more than once")
        elif m not in names or m not in trace.calls:
            reasons.append(f"a layer outside the traced model ({type(m).__name__})")
    position = {m: i for i, m in enumerate(trace.order)}

    def ordered(ms: list[nn.Module]) -> list[nn.Module]:
        return sorted(dict.fromkeys(ms), key=lambda m: position.get(m, len(position)))

    return ordered(producers), ordered(followers), ordered(readers), reasons[0] if reasons else None


def channel_groups(model: nn.Module, example: torch.Tensor) -> list[ChannelGroup]:
    """The coupled channel groups of `model`, in forward order of their first producer; a group whose
    coupling Torch-Pruning or this module cannot follow keeps its channels (`left_out` says why)."""
    if not any(_weighted(m) for m in model.modules()):
        return []  # e.g. an exported .pt2 graph: its convs are ops, not modules
    names = {m: n for n, m in model.named_modules()}
    trace = _trace(model, example)
    weighted = [m for m in trace.order if _weighted(m) and not _is_depthwise(m)]
    try:
        dg = _dependency_graph(model, example)
    except Exception as exc:  # noqa: BLE001 — a model tp cannot trace keeps every channel, and says why
        why = f"Torch-Pruning could not trace the model ({type(exc).__name__})"
        return [ChannelGroup(names[m], _out_channels(m), (names[m],), left_out=why) for m in weighted]
    outputs = {n for n in dg.module2node.values() if not n.outputs}
    groups, seen = [], set()
    for m in weighted:
        if m in seen or m not in dg.module2node:
            continue
        producers, followers, readers, why = _group_of(dg, m, names, trace, outputs)
        producers = producers or [m]
        seen.update(producers)
        if not (_is_conv(m) or isinstance(m, nn.Linear)) and why is None:
            why = f"{names[m]} is a grouped convolution (groups={m.groups})"
        groups.append(ChannelGroup(names[producers[0]], _out_channels(m), tuple(names[p] for p in producers),
                                   tuple(names[f] for f in followers if f in names),
                                   tuple(names[r] for r in readers if r in names), left_out=why))
    return _tried(model, example, groups)


def _tried(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup]) -> list[ChannelGroup]:
    """`groups` with those whose removal does not run left out: one channel less in every prunable group,
    then a forward pass (a constant or the image added to a group's channels is outside the dependency
    graph, and the shapes no longer match); when it fails, each group is tried alone to name the culprits."""
    prunable = [g for g in groups if g.left_out is None and g.channels > 1]

    def fails(chosen: list[ChannelGroup]) -> str | None:
        try:
            trial = remove_channels(model, example, chosen, {g.name: g.channels - 1 for g in chosen})
            trial.eval()
            with torch.no_grad():
                trial(example)
        except Exception as exc:  # noqa: BLE001 — the reason goes in the record instead
            return f"removing its channels does not run ({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
        return None

    if not prunable or fails(prunable) is None:
        return groups
    reasons = {g.name: fails([g]) for g in prunable}
    return [dataclasses.replace(g, left_out=reasons[g.name]) if reasons.get(g.name) else g for g in groups]


def _out_channels(m: nn.Module) -> int:
    return m.out_features if isinstance(m, nn.Linear) else m.out_channels


def layer_geometry(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup] | None = None) -> list[LayerGeometry]:
    """Every conv, depthwise conv and Linear in forward order, with the groups of its input and output
    channels (what Vela's cost of the layer at any width depends on)."""
    if not any(_weighted(m) for m in model.modules()):
        return []
    groups = channel_groups(model, example) if groups is None else groups
    names = {m: n for n, m in model.named_modules()}
    trace = _trace(model, example)
    out_group = {p: g for g in groups for p in g.producers}
    in_group = {r: g for g in groups for r in g.readers}
    carried = {f: g for g in groups for f in g.followers}
    rows = []
    for m in trace.order:
        if not _weighted(m):
            continue
        name = names[m]
        if isinstance(m, nn.Linear):
            source = in_group.get(name)
            per_channel = m.in_features // source.channels if source and m.in_features % source.channels == 0 else 1
            produced = out_group.get(name)
            rows.append(LayerGeometry(name, "fc", m.in_features, m.out_features, in_group=source.name if source else None,
                                      out_group=None if produced is None or produced.left_out == CLASS_SCORES else produced.name,
                                      in_per_channel=per_channel))
            continue
        shape = trace.input_shapes[m]
        hw = (int(shape[-2]), int(shape[-1]))
        if _is_depthwise(m):
            group = carried.get(name)
            rows.append(LayerGeometry(name, "depthwise", m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), hw,
                                      group.name if group else None, group.name if group else None))
            continue
        source, produced = in_group.get(name), out_group.get(name)
        rows.append(LayerGeometry(name, "conv", m.in_channels, m.out_channels, tuple(m.kernel_size), tuple(m.stride), hw,
                                  source.name if source else None,
                                  None if produced is None or produced.left_out == CLASS_SCORES else produced.name))
    return rows


def _bn_after(dg: tp.DependencyGraph, producer: nn.Module) -> nn.Module | None:
    """The BatchNorm that reads `producer`'s output directly, if any."""
    node = dg.module2node.get(producer)
    for out in node.outputs if node else ():
        if isinstance(out.module, BATCHNORMS):
            return out.module
    return None


def _bn_scale(bn: nn.Module | None) -> np.ndarray | None:
    """γ / √(var + ε) per channel (None without a BatchNorm, or one without running statistics)."""
    if bn is None or bn.running_var is None:
        return None
    gamma = bn.weight.detach() if bn.weight is not None else torch.ones_like(bn.running_var)
    return (gamma / torch.sqrt(bn.running_var + bn.eps)).double().cpu().numpy()


def remove_channels(model: nn.Module, example: torch.Tensor, groups: list[ChannelGroup], kept: dict[str, int]) -> nn.Module:
    """A copy of `model` in which each group of `kept` keeps `kept[name]` channels, those with the highest
    `channel_plan.channel_scores` (filter L1 × BatchNorm scale, the same formula as tf); Torch-Pruning
    slices every coupled layer. Left-out groups and groups not in `kept` stay whole; `model` is unchanged."""
    model = cons.copy_model(model)
    if not any(not g.left_out and g.name in kept and kept[g.name] < g.channels for g in groups):
        return model
    dg = _dependency_graph(model, example)
    modules = dict(model.named_modules())
    removals = []  # every group's channels chosen on the unpruned weights first, as tf does
    for group in groups:
        keep = kept.get(group.name)
        if group.left_out or keep is None or keep >= group.channels:
            continue
        producers = [modules[p] for p in group.producers]
        filters = [p.weight.detach().double().cpu().numpy() for p in producers]
        scales = [_bn_scale(_bn_after(dg, p)) for p in producers]
        chosen = set(channel_plan.kept_indices(channel_plan.channel_scores(filters, scales), keep).tolist())
        removals.append((producers[0], [i for i in range(group.channels) if i not in chosen]))
    for producer, removed in removals:
        dg.get_pruning_group(producer, _out_fn(producer), idxs=removed).prune()
    _resync_spec(model)
    return model


def _resync_spec(model: nn.Module) -> None:
    """The built-in ConvNet's spec with each conv's new channel count (nothing reads the counts after
    construction today; kept true so that a later reader is not misled)."""
    spec = getattr(model, "spec", None)
    if spec is None or not hasattr(spec, "blocks"):
        return
    blocks = tuple(dataclasses.replace(b, convs=tuple(dataclasses.replace(c, filters=getattr(model, c.name).out_channels)
                                                      for c in b.convs)) for b in spec.blocks)
    model.spec = dataclasses.replace(spec, blocks=blocks)


@REGISTRY.register(ChannelPruneConfig)
def apply(model: nn.Module, config: ChannelPruneConfig, ctx: StepContext) -> nn.Module:
    """A channel-pruned, fine-tuned copy of `model`; the caller's model is not changed."""
    data: Dataset = ctx.data
    (example,) = zeros_input(input_shape_nchw(data.input_shape))
    groups = channel_groups(model, example)
    geometry = layer_geometry(model, example, groups)
    plan = channel_plan.plan_for(config, groups, geometry, ctx.target)
    model = remove_channels(model, example, groups, plan.kept)
    ctx.note(plan.note(geometry) if groups else "channel-prune: no conv or linear module to follow (an exported "
             ".pt2 graph keeps its layers as ops, not modules): nothing removed")
    ctx.record("channel_plan", plan.as_dict(geometry))
    if cons.constraints_of(model):  # it runs first in a chain; an earlier mask no longer fits the sliced weights
        object.__setattr__(model, cons.ATTR, [])
        ctx.note("channel-prune: the earlier steps' weight constraints were dropped (the layers' shapes changed)")
    train(model, data, fine_tune_epochs(config, len(data.x_train)), ctx.seed, progress=ctx.progress, fine_tune=ctx.fine_tune)
    return model
