"""Line up the per-layer rows of a tf and a torch run by the graph's structure, so the report puts
the same layer of both frameworks on one line for any model.

Names cannot do it: a user's Keras layer is `conv2d_1` where the torch module is `3.body.0`, and
Vela names rows after tensors. Counting (k-th weighted row beside k-th) breaks as soon as one
converter lowers a layer differently: tf's MEAN (Keras GlobalAveragePooling2D) becomes a
DepthwiseConv2D + Mul in Vela, torch's AdaptiveAvgPool2d an AvgPool, and tf adds a MemoryCopy of
the input. What both graphs keep is the order of the ops, what each op computes (its normalised
kind) and its size (MACs, weight shape). So each row gets a kind, and the two sequences are aligned
like two DNA strings (a weighted longest common subsequence): rows pair only when their kinds are
compatible, equal kinds and equal sizes pair first, and a row with no partner stands alone on its
line instead of shifting every later row.

    pairs = pair_rows(tf.vela.per_layer, torch.vela.per_layer, tf.weights.layers, torch.weights.layers)
    for a, b in pairs:  # a or b is None on a line with one side only
        ...

Framework-free: plain dataclasses in, plain tuples out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, TypeVar

from condition.backend.layer_names import WEIGHTED_OPERATORS
from condition.backend.metrics import LayerEstimate, LayerWeights

A = TypeVar("A")
B = TypeVar("B")

# Vela operator (without its "Bias" suffix) → the kind both frontends agree on. Torch lowers a Linear
# to a 1×1 Conv2D, so a conv carrying fully connected weights is "matmul" too (see `op_kind`).
KINDS = {
    "Conv2D": "conv",
    "DepthwiseConv2D": "depthwise",
    "FullyConnected": "matmul",
    "MatMul": "matmul",
    "TransposeConv2D": "transpose_conv",
    "AvgPool": "avgpool",
    "MaxPool": "maxpool",
}
# Kinds that may stand for the same layer when lowered differently: a conv for a Linear (when the
# weights do not say), a depthwise conv for an average pool (Vela's MEAN lowering).
COMPATIBLE = (frozenset({"conv", "matmul"}), frozenset({"depthwise", "avgpool"}))
# Which Vela operators a weight tensor of each LayerWeights.kind can belong to ("" = not recorded).
WEIGHT_OPERATORS = {
    "conv": frozenset({"Conv2D"}),
    "depthwise": frozenset({"DepthwiseConv2D"}),
    "fc": frozenset({"FullyConnected", "MatMul", "Conv2D"}),
    "transpose_conv": frozenset({"TransposeConv2D", "Conv2D"}),
}

SAME_KIND, RELATED_KIND, SAME_MACS, SAME_WEIGHTS = 4.0, 2.0, 2.0, 2.0


@dataclass(frozen=True)
class LayerRow:
    """One Vela row worth a line in the report, with the exported weights of its layer (None for
    ops without weights, and for ops Vela made up, such as the depthwise conv of a MEAN)."""

    estimate: LayerEstimate
    weights: LayerWeights | None
    kind: str  # normalised op kind, see `op_kind`

    @property
    def cycles(self) -> int:
        return self.estimate.op_cycles


Pair = tuple[LayerRow | None, LayerRow | None]


def base_operator(operator: str) -> str:
    """`Conv2DBias` → `Conv2D`: Vela names an op with a fused bias apart, the layer is the same."""
    return operator.removesuffix("Bias")


def op_kind(row: LayerEstimate, weights: LayerWeights | None, weights_known: bool) -> str:
    """The kind both frontends agree on: a conv carrying fully connected weights is "matmul" (torch's
    Linear), and a depthwise conv without weights on a side whose weights are known is "avgpool"
    (Vela lowers tf's MEAN to DepthwiseConv2D + Mul, the same layer torch exports as AvgPool)."""
    op = base_operator(row.operator)
    if weights is not None and weights.kind == "fc":
        return "matmul"
    if op == "DepthwiseConv2D" and weights is None and weights_known:
        return "avgpool"
    return KINDS.get(op, op.lower())


def attach_weights(rows: Sequence[LayerEstimate], weights: Sequence[LayerWeights]) -> list[LayerWeights | None]:
    """Each Vela row's weight layer, or None. The weighted rows and the weight tensors are both in
    execution order but need not be as many (tf's MEAN is a weighted-looking DepthwiseConv2D with no
    exported weights), so they are aligned by kind and size, not counted off k-th with k-th."""
    weighted = [i for i, r in enumerate(rows) if base_operator(r.operator) in _BASE_WEIGHTED]
    out: list[LayerWeights | None] = [None] * len(rows)
    for i, k in align([rows[i] for i in weighted], list(weights), _weight_score):
        if i is not None and k is not None:
            out[weighted[i]] = weights[k]
    return out


def layer_rows(rows: Sequence[LayerEstimate], weights: Sequence[LayerWeights] | None = None) -> list[LayerRow]:
    """The rows worth a line: those Vela gives cycles (the Relu/Clamp rows after a conv have 0: Vela
    fused them into it) and those carrying weights (a layer left on the CPU keeps its line)."""
    weights = list(weights or [])
    attached = attach_weights(rows, weights)
    return [LayerRow(r, w, op_kind(r, w, bool(weights))) for r, w in zip(rows, attached)
            if w is not None or (r.target == "NPU" and r.op_cycles > 0)]


def pair_rows(a: Sequence[LayerEstimate], b: Sequence[LayerEstimate],
              weights_a: Sequence[LayerWeights] | None = None,
              weights_b: Sequence[LayerWeights] | None = None) -> list[Pair]:
    """Both runs' rows (see `layer_rows`) in execution order, the same layer on one line; a line has
    one side None where that layer has no partner in the other graph."""
    ra, rb = layer_rows(a, weights_a), layer_rows(b, weights_b)
    return [(ra[i] if i is not None else None, rb[j] if j is not None else None) for i, j in align(ra, rb, pair_score)]


def pair_score(a: LayerRow, b: LayerRow) -> float | None:
    """How sure it is that `a` and `b` are one layer; None when they cannot be (incompatible kinds).
    Same kind beats a related one, and equal MACs or equal weight shapes (dimensions compared as a
    multiset: tf's OHWI and torch's OIHW hold the same numbers) break ties between repeated blocks."""
    if a.kind == b.kind:
        score = SAME_KIND
    elif any({a.kind, b.kind} <= family for family in COMPATIBLE):
        score = RELATED_KIND
    else:
        return None
    if a.estimate.macs and a.estimate.macs == b.estimate.macs:
        score += SAME_MACS
    if a.weights is not None and b.weights is not None and sorted(a.weights.shape) == sorted(b.weights.shape):
        score += SAME_WEIGHTS
    return score


def align(a: Sequence[A], b: Sequence[B], score: Callable[[A, B], float | None]) -> list[tuple[int | None, int | None]]:
    """Index pairs of the alignment of `a` and `b` that maximises the summed `score` of paired items
    (None: may not pair), keeping both orders; an unpaired item gets a line of its own (index None
    on the other side). Needleman–Wunsch with a gap cost of 0; ties prefer pairing."""
    n, m = len(a), len(b)
    scores = [[score(x, y) for y in b] for x in a]
    best = [[0.0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            s = scores[i - 1][j - 1]
            best[i][j] = max(best[i - 1][j], best[i][j - 1], best[i - 1][j - 1] + s if s is not None else 0.0)
    out: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        s = scores[i - 1][j - 1] if i > 0 and j > 0 else None
        if s is not None and best[i][j] == best[i - 1][j - 1] + s:
            out.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif j > 0 and (i == 0 or best[i][j] == best[i][j - 1]):
            out.append((None, j - 1))
            j -= 1
        else:
            out.append((i - 1, None))
            i -= 1
    return out[::-1]


def _weight_score(row: LayerEstimate, layer: LayerWeights) -> float | None:
    """A weight tensor belongs to a weighted row of an operator its kind allows; a row whose MACs are
    a whole multiple of the tensor's size (one multiply per weight per output pixel) fits best."""
    if layer.kind and base_operator(row.operator) not in WEIGHT_OPERATORS.get(layer.kind, frozenset()):
        return None
    fits = layer.params > 0 and row.macs > 0 and row.macs % layer.params == 0
    return SAME_KIND + (SAME_MACS if fits else 0.0)


_BASE_WEIGHTED = frozenset(base_operator(op) for op in WEIGHTED_OPERATORS)
