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
import re
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
    """Rows renamed by `rename` (tensor name → layer name). Weight layers not yet named from the model
    (still `tfl.pseudo_qconst3`) take their rows' names when the weighted rows and layers line up."""
    rows = [dataclasses.replace(row, name=rename(row.name)) for row in estimate.per_layer]
    estimate = dataclasses.replace(estimate, per_layer=rows)
    if not any(layer.name.startswith(UNNAMED_WEIGHT) for layer in weights.layers):
        return estimate, weights
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


# Vela rows of an activation fused into the op before them (Vela gives them no cycles of their own).
FUSED_ACTIVATIONS = frozenset({"Relu", "Relu6", "ReluN1To1", "Clamp", "Sigmoid", "Tanh", "LUT"})


def names_of_unweighted_rows(estimate: VelaEstimate, names: dict[str, list[str]]) -> VelaEstimate:
    """Rows without weights named from the model: the k-th `AvgPool` row takes `names["AvgPool"][k]`
    when the counts of that operator agree (else the row keeps a cleaned op name, `avg_pool2d`, not
    `tosa_avg_pool2d_default`); a fused activation's row takes the name of the row before it, as the
    tf side's Relu rows carry their conv's name."""
    rows = list(estimate.per_layer)
    by_kind: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        if row.operator not in WEIGHTED_OPERATORS and row.target == "NPU":
            by_kind.setdefault(row.operator, []).append(i)
    for kind, indices in by_kind.items():
        given = names.get(kind, [])
        for k, i in enumerate(indices):
            if len(given) == len(indices):
                rows[i] = dataclasses.replace(rows[i], name=given[k])
            elif kind in FUSED_ACTIVATIONS and i > 0 and not rows[i].op_cycles:
                rows[i] = dataclasses.replace(rows[i], name=rows[i - 1].name)
            else:
                rows[i] = dataclasses.replace(rows[i], name=tosa_op_name(rows[i].name))
    return dataclasses.replace(estimate, per_layer=rows)


def tosa_op_name(tensor: str) -> str:
    """`tosa_avg_pool2d_default_3` → `avg_pool2d`: the op an ExecuTorch TOSA tensor was named after."""
    return re.sub(r"_default(_\d+)?$", "", tensor.removeprefix("tosa_")) or tensor


# The TF op of a Keras layer's weights, as it ends a part of a fused TFLite tensor name.
TF_WEIGHTED_OPS = frozenset({"Conv2D", "depthwise", "MatMul", "conv2d_transpose"})
# The converter's name of a constant weight tensor: no layer name in it.
UNNAMED_WEIGHT = "tfl.pseudo_"


def keras_layer_name(tensor: str, output_layer: str) -> str:
    """`model/block1_dw/depthwise;model/block1_dw/BiasAdd` → `block1_dw`; the model's output tensor
    (`StatefulPartitionedCall:0`) → `output_layer`. Anything else is returned as it is.

    A fused op's name lists every layer it holds, the activation first, the op itself last
    (`m/re_lu/Relu;m/batch_normalization/FusedBatchNormV3;m/conv2d/Conv2D1`, the converter adding a
    digit to keep names unique): the layer whose weights the op carries (`conv2d`) names it, as the
    torch side names it after the conv module; an op without weights (`m/re_lu_6/Relu;m/add/add`)
    is named after its own layer (`add`), not the activation fused into it."""
    if tensor.startswith("StatefulPartitionedCall"):
        return output_layer
    parts = [p.split("/") for p in tensor.split(";")]
    weighted = next((p for p in parts if len(p) > 2 and p[-1].rstrip("0123456789") in TF_WEIGHTED_OPS), None)
    layer = weighted or parts[-1]
    return layer[1] if len(layer) > 2 else tensor


def names_like(weights: WeightStats, named: WeightStats) -> WeightStats:
    """An earlier stage's weights named like the final export's (same layers, same order)."""
    if len(weights.layers) != len(named.layers):
        return weights
    return dataclasses.replace(weights, layers=[dataclasses.replace(a, name=b.name) for a, b in zip(weights.layers, named.layers)])
