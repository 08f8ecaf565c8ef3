"""Per-layer panels: for each technique row, every NPU op of the tf and the torch run with its
cycles, the same layer of both on one line (lined up by the graph's structure in
compare/layer_pairing.py, not by name or count), so a reader sees which layer one frontend makes
slower, which lost its zeros, or kept too many distinct values.
"""
from __future__ import annotations

from typing import Callable

from condition.backend.metrics import LayerWeights, MetricsRecord
from condition.compare.layer_pairing import LayerRow, layer_rows, pair_rows
from condition.compare.layout import RATIO_MARGIN, Panel, Value, num, pct
from condition.compare.table import Row, Section

CAPTION = ("Every op Vela gives cycles to, in execution order, tf and torch lined up by the graph's structure (op kind, "
           "MACs, weight shape), not by name; a line with one side empty is an op the other graph does not have. Left out: "
           "rows of 0 cycles (ops Vela fused into the one before, such as the Relu after a conv). Cycles are Vela's per-op estimate; "
           "tf vs torch names the side whose op takes more than 5 % more cycles and by how much. Vela lowers Keras' "
           "GlobalAveragePooling2D (MEAN) to a DepthwiseConv2D + Mul and torch's AdaptiveAvgPool2d to an AvgPool: they "
           "share a line. Sparsity and distinct values are counted on the exported int8 weights (distinct values per "
           "quantization channel where weights are per channel).")

Line = tuple[LayerRow | None, ...]


def _ok(row: Row, fw: str) -> MetricsRecord | None:
    side = row.sides.get(fw)
    return side.record if side is not None and side.status == "ok" and side.record is not None else None


def _weights(record: MetricsRecord) -> list[LayerWeights]:
    return list(record.weights.layers) if record.weights else []


def _lines(records: list[MetricsRecord | None]) -> list[Line]:
    """One line per layer: paired across two runs, or one run's rows alone."""
    per_layer = [list(r.vela.per_layer) if r is not None and r.vela else [] for r in records]
    weights = [_weights(r) if r is not None else [] for r in records]
    if len(records) == 2:
        return list(pair_rows(per_layer[0], per_layer[1], weights[0], weights[1]))
    return [(row,) for row in layer_rows(per_layer[0], weights[0])] if records else []


def cycles_marker(a: LayerRow | None, b: LayerRow | None, names: tuple[str, str], margin: float = RATIO_MARGIN) -> Value:
    """The side whose op takes more than `margin` more cycles, and by how much ("tf +259 %"); which
    side a lone row belongs to ("tf only")."""
    if a is None or b is None:
        only = names[0] if b is None else names[1]
        return Value(f"{only} only", "no op of the other graph lines up with this one", "muted")
    if a.estimate.target != "NPU" or b.estimate.target != "NPU":
        return Value("–", "", "muted")
    note = f"{names[0]} {a.cycles:,} vs {names[1]} {b.cycles:,} cycles (Vela estimate)"
    for slow, fast, name in ((a, b, names[0]), (b, a, names[1])):
        if slow.cycles > fast.cycles * (1 + margin):
            more = f"+{(slow.cycles / fast.cycles - 1) * 100:.0f} %" if fast.cycles else f"+{slow.cycles:,} cycles"
            return Value(f"{name} {more}", note, f"worse-{name}")
    return Value("≈", note, "")


def _name(r: LayerRow | None) -> Value:
    return Value(r.estimate.name, f"weights: {r.weights.name}" if r.weights else "") if r else Value("–", "", "muted")


def _operator(r: LayerRow | None) -> Value:
    if r is None:
        return Value("–", "", "muted")
    where = "" if r.estimate.target == "NPU" else f" ({r.estimate.target})"
    return Value(r.estimate.operator + where, f"{r.estimate.macs:,} MACs")


def _cycles(r: LayerRow | None) -> Value:
    if r is None:
        return Value("–", "", "muted")
    if r.estimate.target != "NPU":
        return Value("CPU", "not compiled for the NPU", "muted")
    return Value(num(r.cycles), f"NPU {r.estimate.npu_cycles:,} of {r.cycles:,} op cycles")


def _params(line: Line) -> Value:
    counts = [r.weights.params if r and r.weights else None for r in line]
    known = [c for c in counts if c is not None]
    if not known:
        return Value("–", "", "muted")
    if len(set(known)) == 1:
        return Value(num(known[0]))
    return Value(" / ".join(num(c) for c in counts), "the two exports hold different numbers of weights")


def _weight_value(r: LayerRow | None, text: Callable[[LayerWeights], str]) -> Value:
    return Value(text(r.weights)) if r and r.weights else Value("–", "", "muted")


def _left_over(fw: str, record: MetricsRecord | None, lines: list[Line], k: int) -> str:
    """A footnote for weight tensors no Vela row took (their layer's line would be missing)."""
    if record is None:
        return ""
    shown = {id(line[k].weights) for line in lines if line[k] is not None and line[k].weights is not None}
    missing = [w.name for w in _weights(record) if id(w) not in shown]
    return f"{fw}: no Vela row for the weights of {', '.join(missing)}" if missing else ""


def layer_panel(row: Row, fws: list[str]) -> Panel | None:
    records = [_ok(row, f) for f in fws]
    lines = _lines(records)
    if not lines:
        return None
    # the marker column only where both runs have Vela rows to compare (not beside a failed or missing run)
    paired = len(fws) == 2 and all(r is not None and r.vela is not None and r.vela.per_layer for r in records)
    n = len(fws)
    groups = [("layer", n), ("Vela operator", n), ("cycles", n + int(paired)), ("weights", 1), ("sparsity", n),
              ("distinct values", n)]
    columns = fws * 3 + ([" vs ".join(fws)] if paired else []) + ["params"] + fws * 2
    rows = []
    for line in lines:
        cells = [_name(r) for r in line] + [_operator(r) for r in line] + [_cycles(r) for r in line]
        cells += [cycles_marker(line[0], line[1], (fws[0], fws[1]))] if paired else []
        cells.append(_params(line))
        cells += [_weight_value(r, lambda w: pct(w.sparsity)) for r in line]
        cells += [_weight_value(r, lambda w: num(w.unique_values)) for r in line]
        rows.append(cells)
    notes = [note for k, f in enumerate(fws) if (note := _left_over(f, records[k], lines, k))]
    return Panel(title=f"Per layer · {row.label}", caption=CAPTION, groups=groups, columns=columns, rows=rows,
                 footnotes=notes, sources=("estimate", "measured"), text_columns=2 * n)


def layer_panels(section: Section) -> list[Panel]:
    fws = list(section.frontends)
    return [p for row in section.rows if not row.is_float if (p := layer_panel(row, fws)) is not None]
