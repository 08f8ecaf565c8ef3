"""Give per-layer figures the model's own layer names, so the same layer of a tf and a torch run can
stand side by side (Vela names a row after an output tensor: `StatefulPartitionedCall:0` on the tf
side, `tosa_rescale_default` on the torch side; the weights are `tfl.pseudo_qconst3` or `linear_1`).

Both converters keep the weighted layers (Conv, depthwise, fully connected) one op each and in
execution order, so the k-th weighted Vela row and the k-th exported weight tensor are the same
layer. Each frontend names one of the two sides from its model; the other side takes the names by
that order. When the counts differ (an op Vela split or left on the CPU) the names are left as they
are rather than guessed.

    estimate, weights = names_from_weights(estimate, weights)  # torch: weights carry module names
"""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

from condition.backend.metrics import VelaEstimate, WeightStats

log = logging.getLogger(__name__)

# Vela's per-layer operator names of ops that carry a weight tensor (TFLite and TOSA inputs).
WEIGHTED_OPERATORS = frozenset({"Conv2D", "Conv2DBias", "DepthwiseConv2D", "DepthwiseConv2DBias", "FullyConnected",
                                "MatMul", "TransposeConv2D", "TransposeConv2DBias"})


def weighted_rows(estimate: VelaEstimate) -> list[int]:
    """Indices of the per-layer rows that carry weights, in execution order."""
    return [i for i, row in enumerate(estimate.per_layer) if row.operator in WEIGHTED_OPERATORS and row.target == "NPU"]


def names_from_rows(estimate: VelaEstimate, weights: WeightStats,
                    rename: Callable[[str], str]) -> tuple[VelaEstimate, WeightStats]:
    """Rows renamed by `rename` (tensor name → layer name); weight layers take their rows' names."""
    rows = [dataclasses.replace(row, name=rename(row.name)) for row in estimate.per_layer]
    estimate = dataclasses.replace(estimate, per_layer=rows)
    order = weighted_rows(estimate)
    if len(order) != len(weights.layers):
        log.info("%d weighted Vela rows, %d weight tensors: weight names left as exported", len(order), len(weights.layers))
        return estimate, weights
    layers = [dataclasses.replace(layer, name=rows[i].name) for layer, i in zip(weights.layers, order)]
    return estimate, dataclasses.replace(weights, layers=layers)


def names_from_weights(estimate: VelaEstimate, weights: WeightStats) -> tuple[VelaEstimate, WeightStats]:
    """Weighted rows take the names of the weight layers (already named from the model)."""
    order = weighted_rows(estimate)
    if len(order) != len(weights.layers):
        log.info("%d weighted Vela rows, %d weight tensors: row names left as Vela wrote them", len(order), len(weights.layers))
        return estimate, weights
    rows = list(estimate.per_layer)
    for layer, i in zip(weights.layers, order):
        rows[i] = dataclasses.replace(rows[i], name=layer.name)
    return dataclasses.replace(estimate, per_layer=rows), weights


# The TF op of a Keras layer's weights, as it ends a part of a fused TFLite tensor name.
TF_WEIGHTED_OPS = frozenset({"Conv2D", "depthwise", "MatMul", "conv2d_transpose"})


def keras_layer_name(tensor: str, output_layer: str) -> str:
    """`model/block1_dw/depthwise;model/block1_dw/BiasAdd` → `block1_dw`; the model's output tensor
    (`StatefulPartitionedCall:0`) → `output_layer`. Anything else is returned as it is.

    A fused op's name lists every layer it holds, the activation first
    (`m/stem_relu/Relu;m/stem_bn/FusedBatchNormV3;m/stem/Conv2D`): the layer whose weights the op
    carries (`stem`) names it, as the torch side names it after the conv module."""
    if tensor.startswith("StatefulPartitionedCall"):
        return output_layer
    parts = [p.split("/") for p in tensor.split(";")]
    weighted = next((p for p in parts if len(p) > 2 and p[-1] in TF_WEIGHTED_OPS), None)
    first = weighted or parts[0]
    return first[1] if len(first) > 2 else tensor


def names_like(weights: WeightStats, named: WeightStats) -> WeightStats:
    """An earlier stage's weights named like the final export's (same layers, same order)."""
    if len(weights.layers) != len(named.layers):
        return weights
    return dataclasses.replace(weights, layers=[dataclasses.replace(a, name=b.name) for a, b in zip(weights.layers, named.layers)])
