"""Sparsity and unique-value counts per layer, measured on the int8 weight tensors of the
converted PT2E graph (what the .pte's delegate is compiled from), not on float weights or masks."""
from __future__ import annotations

from typing import Any, Sequence

import torch

from condition.backend.metrics import LayerWeights, WeightStats
from condition.techniques import conditioning, exported_layer

LAYER_OPS = ("linear", "conv", "addmm", "mm", "matmul", "bmm")
# aten op → the operator of the Vela row it becomes (through TOSA), for ops without weights
VELA_OPERATOR_OF_ATEN = {"avg_pool2d": "AvgPool", "adaptive_avg_pool2d": "AvgPool", "max_pool2d": "MaxPool",
                         "add": "Add", "sub": "Sub", "mul": "Mul"}


def _channel_axis(node: torch.fx.Node) -> int | None:
    """The quantization axis when the weight's dequantize is per channel, else None."""
    for user in node.users:
        if "dequantize_per_channel" in str(user.target):
            axis = user.args[3] if len(user.args) > 3 else user.kwargs.get("axis", 0)
            return int(axis)
    return None


def unique_per_channel(value: torch.Tensor, axis: int | None) -> int:
    """Distinct int8 values in the most varied quantization channel (whole tensor if per tensor)."""
    if axis is None:
        return int(torch.unique(value).numel())
    rows = value.movedim(axis, 0).reshape(value.shape[axis], -1)
    return max(int(torch.unique(r).numel()) for r in rows)


def _consumer(node: torch.fx.Node) -> torch.fx.Node | None:
    """The layer op (linear, conv, ...) that consumes a weight through its dequantize, if any."""
    seen = node
    for _ in range(4):
        users = list(seen.users)
        if not users:
            return None
        seen = users[0]
        if any(op in str(seen.target) for op in LAYER_OPS):
            return seen
    return None


def _layer_name(node: torch.fx.Node) -> str:
    """The model's own name of the layer that consumes a weight, e.g. `fc2` or `blocks.1.dw` (its
    module path, kept by torch.export); the graph op name (`linear_1`) else."""
    layer = _consumer(node)
    if layer is None:
        return node.name
    stack = list((layer.meta.get("nn_module_stack") or {}).values())
    path = stack[-1][0] if stack else ""
    return path.replace("L['self'].", "") or layer.name


def _kind(node: torch.fx.Node, value: torch.Tensor) -> str:
    """conv | depthwise | fc | transpose_conv | other, from the op that consumes the weight."""
    layer = _consumer(node)
    op = str(layer.target) if layer is not None else ""
    if op.startswith("aten.linear"):
        return "fc"
    if op.startswith(("aten.conv1d", "aten.conv2d", "aten.conv3d")):  # (x, w, b, stride, padding, dilation, groups)
        groups = int(layer.args[6]) if len(layer.args) > 6 else 1
        return "conv" if groups == 1 else "depthwise" if value.shape[1] == 1 else "grouped_conv"
    if op.startswith("aten.conv_transpose"):
        return "transpose_conv"
    return "other"


def two_four(value: torch.Tensor, kind: str) -> bool:
    """Vela's U85 2:4 sparse format fits: a conv or fully connected weight (out, in, ...) whose
    every 4 consecutive input channels, at each kernel position, hold at least 2 zeros."""
    if kind not in ("conv", "fc") or value.shape[1] % 4:
        return False
    groups = value.movedim(1, -1).reshape(-1, 4)
    return bool(((groups == 0).sum(dim=1) >= 2).all())


def int8_weight_stats(converted: torch.fx.GraphModule, chain: Sequence[Any] = ()) -> WeightStats:
    """One LayerWeights per int8 constant of 2+ dimensions (Linear/Conv weights); unique values
    are counted per quantization channel, as the record defines them. With the run's `chain`,
    each layer also says which of its techniques conditioned it (and why others left it out)."""
    weights = [node for node in converted.graph.nodes if node.op == "get_attr"
               and isinstance(value := getattr(converted, node.target, None), torch.Tensor)
               and value.dtype == torch.int8 and value.ndim >= 2]
    layers = []
    for node in weights:
        value = getattr(converted, node.target)
        name, kind, axis = _layer_name(node), _kind(node, value), _channel_axis(node)
        info = exported_layer(name, kind, value.shape, "torch", last=node is weights[-1])
        done, left_out = conditioning(chain, info)
        layers.append(
            LayerWeights(
                name=name,
                shape=list(value.shape),
                params=value.numel(),
                zeros=int((value == 0).sum()),
                unique_values=unique_per_channel(value, axis),
                kind=kind,
                unique_axis="tensor" if axis is None else "channel",
                two_four=two_four(value, kind),
                conditioned=done,
                left_out=left_out,
            )
        )
    return WeightStats(layers=layers)


def unweighted_op_names(converted: torch.fx.GraphModule) -> dict[str, list[str]]:
    """Vela operator → the model's names of the ops that become such rows, in graph order: the module
    path of an op module (`6` for an AdaptiveAvgPool2d), or the path of the module whose forward calls
    it plus the op (`5.add` for `x + self.body(x)`; `avg_pool2d` at the top level)."""
    names: dict[str, list[str]] = {}
    for node in converted.graph.nodes:
        parts = str(node.target).split(".") if node.op == "call_function" else []
        operator = VELA_OPERATOR_OF_ATEN.get(parts[1]) if len(parts) > 2 and parts[0] == "aten" else None
        if operator is None:
            continue
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        path, module_type = (stack[-1][0].replace("L['self'].", ""), str(stack[-1][1])) if stack else ("", "")
        is_op_module = module_type.startswith(("torch.nn.modules.pooling", "torch.nn.modules.activation"))
        names.setdefault(operator, []).append(path if path and is_op_module else ".".join(p for p in (path, parts[1]) if p))
    return names
