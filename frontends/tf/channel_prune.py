"""Channel pruning on the TensorFlow side: whole output channels removed from a Keras model, so its layers do
fewer MACs; the plan (how many channels each group keeps) is the framework-free one of condition/channel_plan.py.

A functional or Sequential model's config is walked once, following each tensor's channels to the group they
belong to (`channel_groups`): a Conv2D / Dense makes new channels; BatchNorm, activations, dropout, padding and
pooling carry them; a DepthwiseConv2D (depth multiplier 1) carries them channel for channel; an Add joins its
inputs' groups (the same channels must go from every branch); a Flatten → Dense reads each channel at H·W
positions. Whatever else reads a group (Concatenate, Reshape, Lambda, a layer called twice, a layer we do not
know, a subclassed model) leaves that group as it is, with the reason in the record: never a wrong graph.

The pruned model is the same config with fewer filters / units, rebuilt and given sliced weights
(`remove_channels`), the way frontends/tf/lowering.py rebuilds. Why our own rebuild: kerassurgeon 0.2.0 and
tf2-keras-surgeon 0.0.1 delete channels layer by layer (no residual coupling followed, no DepthwiseConv2D),
tfkerassurgeon imports `tensorflow.python.keras` (gone since TF 2.16), and Sony MCT 2.6.1's Keras pruning
chooses its own channels to a memory target and is disabled on TF ≥ 2.16.

    groups, geometry = channel_groups(model), layer_geometry(model)
    plan = channel_plan.share_plan(groups, 0.5, 16)
    smaller = remove_channels(model, groups, plan.kept)
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from condition import channel_plan
from condition.channel_plan import ChannelGroup, LayerGeometry
from condition.errors import one_line
from condition.fine_tuning import fine_tune_epochs
from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
from condition.techniques import ChannelPruneConfig

STEP = ChannelPruneConfig.name
CLASS_SCORES = "the model's class scores"
SUBCLASSED = "a subclassed Keras model (only Sequential and functional models can be rebuilt)"

# Layers that carry every channel unchanged, one for one (elementwise, or per channel over space).
PASS_THROUGH = {"ReLU", "LeakyReLU", "ELU", "ThresholdedReLU", "Dropout", "SpatialDropout2D", "GaussianNoise",
                "GaussianDropout", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "MaxPooling2D", "AveragePooling2D",
                "GlobalAveragePooling2D", "GlobalMaxPooling2D", "BatchNormalization", "Activation", "Softmax"}
SPATIAL_2D = {"ZeroPadding2D", "Cropping2D", "UpSampling2D", "MaxPooling2D", "AveragePooling2D",
              "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Flatten", "Conv2D", "DepthwiseConv2D"}


@dataclass
class _Tensor:
    """What a tensor's last axis holds: channels of group `group` (None: fixed channels, e.g. the image), each
    at `per_channel` positions (after a Flatten of H×W: H·W); `unpadded_hw`: H, W before a ZeroPadding2D."""

    group: str | None
    per_channel: int = 1
    unpadded_hw: tuple[int, int] | None = None


@dataclass
class _Group:
    producers: list[str]
    channels: int
    followers: list[str] = field(default_factory=list)
    readers: list[str] = field(default_factory=list)
    left_out: str | None = None


@dataclass
class _Graph:
    """The walk's result: groups by root producer, geometry, the BatchNorm right after each producer."""

    groups: dict[str, _Group]
    parent: dict[str, str]
    geometry: list[LayerGeometry]
    bn_after: dict[str, str]
    order: list[str]  # every layer name in graph order

    def root(self, name: str) -> str:
        while self.parent[name] != name:
            self.parent[name] = self.parent[self.parent[name]]
            name = self.parent[name]
        return name


@dataclass
class _Node:
    name: str
    class_name: str
    config: dict[str, Any]
    inputs: list[Any]  # tensor keys
    outputs: list[Any]
    calls: int


def _nodes(model: Any) -> tuple[list[_Node], list[Any], list[Any]]:
    """(the model's layer calls in graph order, input tensor keys, output tensor keys) from its config."""
    _, keras, _ = keras_modules()
    config = model.get_config()
    if isinstance(model, keras.Sequential):
        nodes, previous, inputs = [], None, []
        for entry in config["layers"]:
            name = entry["config"]["name"]
            if entry["class_name"] == "InputLayer":
                previous = name
                inputs = [name]
                continue
            if previous is None:
                previous = "__input__"
                inputs = [previous]
            nodes.append(_Node(name, entry["class_name"], entry["config"], [previous], [name], 1))
            previous = name
        return nodes, inputs, [previous]
    nodes = []
    for entry in config["layers"]:
        name = entry.get("name", entry["config"].get("name"))
        calls = entry.get("inbound_nodes", [])
        if entry["class_name"] == "InputLayer":
            continue
        for index, call in enumerate(calls):
            refs = _tensor_refs(call)
            outs = [(name, index, k) for k in range(_output_count(model, name))]
            nodes.append(_Node(name, entry["class_name"], entry["config"], refs, outs, len(calls)))
    key = lambda ref: (ref[0], ref[1], ref[2])  # noqa: E731
    return nodes, [key(r) for r in config["input_layers"]], [key(r) for r in _as_refs(config["output_layers"])]


def _as_refs(value: Any) -> list[Any]:
    """input_layers / output_layers: one [name, node, tensor] or a list of them."""
    if value and isinstance(value[0], str):
        return [value]
    return list(value)


def _tensor_refs(value: Any) -> list[Any]:
    """Every [layer, node, tensor] reference in one inbound node (also those in a TFOpLambda's kwargs)."""
    refs: list[Any] = []
    if isinstance(value, (list, tuple)):
        if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int) and isinstance(value[2], int):
            refs.append((value[0], value[1], value[2]))
            rest = value[3:]
        else:
            rest = value
        for v in rest:
            refs += _tensor_refs(v)
    elif isinstance(value, dict):
        for v in value.values():
            refs += _tensor_refs(v)
    return refs


def _output_count(model: Any, name: str) -> int:
    try:
        out = model.get_layer(name).output
    except Exception:  # a layer called several times has no single output
        return 1
    return len(out) if isinstance(out, (list, tuple)) else 1


def _shape(model: Any, node: _Node, which: str) -> tuple[Any, ...] | None:
    """The input or output shape of a layer called once, else None."""
    if node.calls != 1:
        return None
    try:
        shape = getattr(model.get_layer(node.name), which)
    except Exception:
        return None
    return tuple(shape) if isinstance(shape, tuple) and shape and not isinstance(shape[0], tuple) else None


def _walk(model: Any) -> _Graph:
    """Follow every tensor's channels through the model (see the module docstring)."""
    graph = _Graph({}, {}, [], {}, [])
    if not getattr(model, "_is_graph_network", False):
        return _subclassed(model, graph)
    nodes, inputs, outputs = _nodes(model)
    tensors: dict[Any, _Tensor] = {key: _Tensor(None) for key in inputs}
    outputs_set = set(outputs)
    consumers: dict[Any, list[str]] = {}
    for node in nodes:
        for ref in node.inputs:
            consumers.setdefault(ref, []).append(node.name)

    def leave_out(group: str | None, reason: str) -> None:
        if group is not None:
            g = graph.groups[graph.root(group)]
            g.left_out = g.left_out or reason

    def state(ref: Any) -> _Tensor:
        t = tensors.get(ref, _Tensor(None))
        return _Tensor(graph.root(t.group) if t.group else None, t.per_channel, t.unpadded_hw)

    for node in nodes:
        graph.order.append(node.name)
        ins = [state(r) for r in node.inputs]
        cls, cfg = node.class_name, node.config
        out: _Tensor | None = None
        why = _not_followed(node, ins, outputs_set)
        if why:
            for t in ins:
                leave_out(t.group, why)
        elif cls in ("Conv2D", "Dense"):
            t = ins[0]
            in_shape = _shape(model, node, "input_shape")
            channels = int(cfg["filters"] if cls == "Conv2D" else cfg["units"])
            graph.parent[node.name] = node.name
            graph.groups[node.name] = _Group([node.name], channels)
            if t.group:
                graph.groups[t.group].readers.append(node.name)
            if cls == "Conv2D":
                kernel, stride = tuple(cfg["kernel_size"]), tuple(cfg["strides"])
                hw = t.unpadded_hw or (tuple(in_shape[1:3]) if in_shape else (1, 1))
                c_in = int(in_shape[-1]) if in_shape else 0
                graph.geometry.append(LayerGeometry(node.name, "conv", c_in, channels, kernel, stride, hw, t.group, node.name))
            else:
                c_in = int(in_shape[-1]) if in_shape else 0
                graph.geometry.append(LayerGeometry(node.name, "fc", c_in, channels, in_group=t.group, out_group=node.name,
                                                    in_per_channel=t.per_channel if t.group else 1))
            out = _Tensor(node.name)
        elif cls == "DepthwiseConv2D":
            t = ins[0]
            in_shape = _shape(model, node, "input_shape")
            c = int(in_shape[-1]) if in_shape else 0
            if t.group:
                graph.groups[t.group].followers.append(node.name)
            hw = t.unpadded_hw or (tuple(in_shape[1:3]) if in_shape else (1, 1))
            graph.geometry.append(LayerGeometry(node.name, "depthwise", c, c, tuple(cfg["kernel_size"]), tuple(cfg["strides"]),
                                                hw, t.group, t.group))
            out = _Tensor(t.group)
        elif cls == "Add":
            groups = {t.group for t in ins}
            if None in groups and len(groups) > 1:
                for g in groups:
                    leave_out(g, f"added by Add {node.name} to channels that stay (the image or a layer not followed)")
                out = _Tensor(None)
            else:
                root = _union(graph, [g for g in groups if g is not None])
                out = _Tensor(root, ins[0].per_channel)
        elif cls == "Flatten":
            t = ins[0]
            in_shape = _shape(model, node, "input_shape")
            positions = int(np.prod(in_shape[1:-1])) if in_shape and len(in_shape) > 2 else 1
            out = _Tensor(t.group, t.per_channel * positions)
        else:  # PASS_THROUGH (checked by _not_followed)
            t = ins[0]
            if t.group and cls == "BatchNormalization":
                graph.groups[t.group].followers.append(node.name)
                source = node.inputs[0]
                producer = source[0] if isinstance(source, tuple) else source
                if producer in graph.parent and consumers.get(source) == [node.name]:
                    graph.bn_after[producer] = node.name
            unpadded = None
            if cls == "ZeroPadding2D":
                in_shape = _shape(model, node, "input_shape")
                unpadded = t.unpadded_hw or (tuple(in_shape[1:3]) if in_shape else None)
            out = _Tensor(t.group, t.per_channel, unpadded)
        for key in node.outputs:
            tensors[key] = out if out is not None else _Tensor(None)
    for key in outputs:
        t = state(key)
        if t.group:
            g = graph.groups[t.group]
            g.left_out = CLASS_SCORES  # the class outputs never change, whatever else reads them
    # the classifier's out_group is None (its outputs are the class scores)
    graph.geometry = [_resolved(graph, g) for g in graph.geometry]
    return graph


def _resolved(graph: _Graph, g: LayerGeometry) -> LayerGeometry:
    from dataclasses import replace

    def name(group: str | None) -> str | None:
        if group is None:
            return None
        root = graph.root(group)
        return None if graph.groups[root].left_out == CLASS_SCORES else root

    return replace(g, in_group=name(g.in_group), out_group=name(g.out_group))


def _union(graph: _Graph, groups: list[str]) -> str | None:
    """Join groups (an Add): the root is the earliest producer, so the group keeps its first producer's name."""
    roots = sorted({graph.root(g) for g in groups}, key=graph.order.index)
    if not roots:
        return None
    first = graph.groups[roots[0]]
    for other in roots[1:]:
        g = graph.groups.pop(other)
        graph.parent[other] = roots[0]
        first.producers += g.producers
        first.followers += g.followers
        first.readers += g.readers
        first.left_out = first.left_out or g.left_out
    return roots[0]


def _not_followed(node: _Node, ins: list[_Tensor], outputs: set[Any]) -> str | None:
    """Why this layer call cannot carry or read its inputs' channels (None: it can)."""
    cls, cfg = node.class_name, node.config
    label = f"read by {cls} {node.name} (not followed)"
    if node.calls != 1:  # a shared layer's weights serve every call: its channels stay, whatever it reads
        return f"read by {cls} {node.name}, a layer called {node.calls} times (not followed)"
    if not any(t.group for t in ins):
        return label if cls not in PASS_THROUGH | {"Conv2D", "Dense", "DepthwiseConv2D", "Add", "Flatten"} else None
    if cfg.get("data_format", "channels_last") != "channels_last":
        return f"read by {cls} {node.name} in channels_first (not followed)"
    flat = any(t.per_channel > 1 for t in ins)
    if cls == "Conv2D":
        return label if cfg.get("groups", 1) != 1 or flat else None
    if cls == "DepthwiseConv2D":
        return label if cfg.get("depth_multiplier", 1) != 1 or flat else None
    if cls in ("Dense", "Add", "Flatten"):
        return None
    if cls == "BatchNormalization":
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        return label if flat or axis not in (-1, 3) else None
    if cls in ("Softmax",) or (cls == "Activation" and cfg.get("activation") == "softmax"):
        return None if set(node.outputs) & outputs else label  # the class scores: they stay anyway
    if cls in PASS_THROUGH:
        return label if flat and cls in SPATIAL_2D else None
    return label


def _subclassed(model: Any, graph: _Graph) -> _Graph:
    """A subclassed model: its Conv2D / Dense layers named, each left out (no graph to follow or rebuild)."""
    for layer in getattr(model, "layers", []):
        cls = type(layer).__name__
        if cls not in ("Conv2D", "Dense"):
            continue
        channels = int(layer.filters if cls == "Conv2D" else layer.units)
        graph.parent[layer.name] = layer.name
        graph.order.append(layer.name)
        graph.groups[layer.name] = _Group([layer.name], channels, left_out=SUBCLASSED)
        kernel = tuple(layer.kernel_size) if cls == "Conv2D" else (1, 1)
        stride = tuple(layer.strides) if cls == "Conv2D" else (1, 1)
        c_in = int(layer.kernel.shape[-2]) if getattr(layer, "kernel", None) is not None else 0
        graph.geometry.append(LayerGeometry(layer.name, "conv" if cls == "Conv2D" else "fc", c_in, channels, kernel, stride,
                                            out_group=layer.name))
    return graph


def channel_groups(model: Any) -> list[ChannelGroup]:
    """The model's coupled channel groups in graph order, each named after its first producer."""
    graph = _walk(model)
    return [ChannelGroup(name, g.channels, tuple(g.producers), tuple(g.followers), tuple(g.readers), g.left_out)
            for name, g in sorted(graph.groups.items(), key=lambda item: graph.order.index(item[0]))]


def layer_geometry(model: Any) -> list[LayerGeometry]:
    """Every Conv2D / DepthwiseConv2D / Dense in graph order, with its groups. A conv after a ZeroPadding2D
    gets the unpadded input's H, W (what torch's conv with padding=1 sees, and the same output size)."""
    return _walk(model).geometry


def group_indices(model: Any, group: ChannelGroup, keep: int, bn_after: dict[str, str] | None = None) -> np.ndarray:
    """The `keep` channels of `group` that stay, by `channel_plan.channel_scores` over its producers."""
    if bn_after is None:
        bn_after = _walk(model).bn_after
    filters, scales = [], []
    for name in group.producers:
        kernel = model.get_layer(name).get_weights()[0]
        filters.append(np.moveaxis(kernel, -1, 0))
        bn = bn_after.get(name)
        scales.append(_bn_scale(model.get_layer(bn)) if bn else None)
    return channel_plan.kept_indices(channel_plan.channel_scores(filters, scales), keep)


def _bn_scale(layer: Any) -> np.ndarray:
    """γ / √(moving variance + ε) of a BatchNormalization (γ = 1 without `scale`)."""
    variance = layer.moving_variance.numpy()
    gamma = layer.gamma.numpy() if layer.gamma is not None else np.ones_like(variance)
    return gamma / np.sqrt(variance + layer.epsilon)


def remove_channels(model: Any, groups: list[ChannelGroup], kept: dict[str, int]) -> Any:
    """A new model (the caller's untouched) in which each group named in `kept` keeps that many channels, the
    ones `channel_plan.channel_scores` ranks highest; every layer that makes, carries or reads them is sliced."""
    _, keras, _ = keras_modules()
    by_name = {g.name: g for g in groups}
    graph = _walk(model)
    indices: dict[str, np.ndarray] = {}
    for name, keep in kept.items():
        group = by_name[name]
        if group.left_out:
            raise ValueError(f"channel group {name} is left out ({group.left_out}): it cannot lose channels")
        if not 0 < keep <= group.channels:
            raise ValueError(f"channel group {name} has {group.channels} channels, cannot keep {keep}")
        if keep < group.channels:
            indices[name] = group_indices(model, group, keep, graph.bn_after)
    out_of: dict[str, str] = {}
    in_of: dict[str, str] = {}
    for name in indices:
        group = by_name[name]
        for layer in group.producers:
            out_of[layer] = name
        for layer in group.followers:
            out_of[layer] = in_of[layer] = name
        for layer in group.readers:
            in_of[layer] = name
    config = copy.deepcopy(model.get_config())
    for entry in config["layers"]:
        name = entry["config"].get("name")
        if name in out_of and entry["class_name"] in ("Conv2D", "Dense"):
            entry["config"]["filters" if entry["class_name"] == "Conv2D" else "units"] = int(len(indices[out_of[name]]))
    new = (keras.Sequential if isinstance(model, keras.Sequential) else keras.Model).from_config(config)
    for layer in new.layers:
        weights = model.get_layer(layer.name).get_weights()
        if not weights:
            continue
        out_idx = indices.get(out_of.get(layer.name, ""))
        in_idx = indices.get(in_of.get(layer.name, ""))
        if out_idx is not None or in_idx is not None:
            channels = by_name[in_of[layer.name]].channels if in_idx is not None else 0
            weights = _sliced(type(layer).__name__, weights, in_idx, out_idx, channels)
        layer.set_weights(weights)
    return new


def _sliced(cls: str, weights: list[np.ndarray], in_idx: np.ndarray | None, out_idx: np.ndarray | None,
            in_channels: int) -> list[np.ndarray]:
    """A layer's weights with only the kept input / output channels (Keras kernels: conv (kh, kw, in, out),
    depthwise (kh, kw, channels, 1), dense (in, out); a Dense after Flatten reads channel c at position p in
    row p·C + c, the NHWC flatten order)."""
    if cls == "BatchNormalization":
        return [w[out_idx] for w in weights]
    if cls == "DepthwiseConv2D":
        return [weights[0][:, :, out_idx, :], *[w[out_idx] for w in weights[1:]]]
    kernel, rest = weights[0], weights[1:]
    if cls == "Conv2D":
        if in_idx is not None:
            kernel = kernel[:, :, in_idx, :]
        if out_idx is not None:
            kernel = kernel[..., out_idx]
    elif cls == "Dense":
        if in_idx is not None:
            positions = kernel.shape[0] // in_channels
            rows = (np.arange(positions)[:, None] * in_channels + in_idx[None, :]).ravel()
            kernel = kernel[rows, :]
        if out_idx is not None:
            kernel = kernel[:, out_idx]
    else:
        raise ValueError(f"cannot slice the weights of {cls}")
    return [kernel, *[w[out_idx] if out_idx is not None else w for w in rest]]


@REGISTRY.register(ChannelPruneConfig)
def apply(model: Any, config: ChannelPruneConfig, ctx: StepContext) -> Any:
    """Return a copy of `model` with the planned channels removed and fine-tuned (the caller's model is left as
    it was); the plan goes to the record's notes and its `channel_plan` field.

        smaller = channel_prune.apply(float_model, ChannelPruneConfig(channel_sparsity=0.5), ctx)
    """
    from condition.frontends.tf.models import clone
    from condition.frontends.tf.train import TrainData, fit

    data: TrainData = ctx.data
    groups, geometry = channel_groups(model), layer_geometry(model)
    plan = channel_plan.plan_for(config, groups, geometry, ctx.target)
    if not getattr(model, "_is_graph_network", False):
        ctx.note(plan.note(geometry))
        ctx.record("channel_plan", plan.as_dict(geometry))
        return model  # nothing removed, nothing to rebuild or fine-tune
    try:
        pruned = remove_channels(model, groups, plan.kept)
    except Exception as exc:  # from_config of a model with custom layers
        ctx.note(f"channel-prune left the model as it was: it could not be rebuilt ({type(exc).__name__}: {one_line(exc)})")
        return clone(model)
    ctx.note(plan.note(geometry))
    ctx.record("channel_plan", plan.as_dict(geometry))
    fit(pruned, data, fine_tune_epochs(config, len(data.x_train)), STEP, fine_tune=ctx.fine_tune)
    return pruned
