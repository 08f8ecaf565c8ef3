"""Sparsity and unique-value counts per layer, measured on the int8 weight tensors of the
converted PT2E graph (what the .pte's delegate is compiled from), not on float weights or masks."""
from __future__ import annotations

import torch

from condition.backend.metrics import LayerWeights, WeightStats

LAYER_OPS = ("linear", "conv", "addmm", "mm", "matmul", "bmm")


def _layer_name(node: torch.fx.Node) -> str:
    """The op that consumes a weight (through its dequantize), e.g. `linear_1`."""
    seen = node
    for _ in range(4):
        users = list(seen.users)
        if not users:
            break
        seen = users[0]
        if any(op in str(seen.target) for op in LAYER_OPS):
            return seen.name
    return node.name


def int8_weight_stats(converted: torch.fx.GraphModule) -> WeightStats:
    """One LayerWeights per int8 constant of 2+ dimensions (Linear/Conv weights)."""
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
                unique_values=int(torch.unique(value).numel()),
            )
        )
    return WeightStats(layers=layers)
