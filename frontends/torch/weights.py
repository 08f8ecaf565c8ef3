"""Sparsity and unique-value counts per layer, measured on the int8 weight tensors of the
converted PT2E graph (what the .pte's delegate is compiled from), not on float weights or masks."""
from __future__ import annotations

import torch

from condition.backend.metrics import LayerWeights, WeightStats

LAYER_OPS = ("linear", "conv", "addmm", "mm", "matmul", "bmm")


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


def _layer_name(node: torch.fx.Node) -> str:
    """The model's own name of the layer that consumes a weight (through its dequantize), e.g. `fc2`
    or `blocks.1.dw` (its module path, kept by torch.export); the graph op name (`linear_1`) else."""
    seen = node
    for _ in range(4):
        users = list(seen.users)
        if not users:
            break
        seen = users[0]
        if any(op in str(seen.target) for op in LAYER_OPS):
            stack = list((seen.meta.get("nn_module_stack") or {}).values())
            path = stack[-1][0] if stack else ""
            return path.replace("L['self'].", "") or seen.name
    return node.name


def int8_weight_stats(converted: torch.fx.GraphModule) -> WeightStats:
    """One LayerWeights per int8 constant of 2+ dimensions (Linear/Conv weights); unique values
    are counted per quantization channel, as the record defines them."""
    layers = []
    for node in converted.graph.nodes:
        if node.op != "get_attr":
            continue
        value = getattr(converted, node.target, None)
        if not isinstance(value, torch.Tensor) or value.dtype != torch.int8 or value.ndim < 2:
            continue
        layers.append(
            LayerWeights(
                name=_layer_name(node),
                shape=list(value.shape),
                params=value.numel(),
                zeros=int((value == 0).sum()),
                unique_values=unique_per_channel(value, _channel_axis(node)),
            )
        )
    return WeightStats(layers=layers)
