"""Per-layer panels: for each technique row, the weighted layers of the tf and the torch run side by
side, k-th with k-th (both exports keep the weighted layers in execution order, and both carry the
model's own layer names: see backend/layer_names.py), so a reader sees which layer lost its
zeros, kept too many distinct values, or holds the cycles.
"""
from __future__ import annotations

from condition.backend.layer_names import weighted_rows
from condition.backend.metrics import LayerWeights, MetricsRecord
from condition.compare.layout import Panel, Value, num, pct
from condition.compare.table import Row, Section

CAPTION = ("Weighted layers in execution order, k-th beside k-th. Sparsity and distinct values are counted on the "
           "exported int8 weights (distinct values per quantization channel where weights are per channel); cycles "
           "are Vela's per-layer estimate of the layer's op.")


def _layers(record: MetricsRecord | None) -> list[tuple[LayerWeights, int | None]]:
    """(weights, op cycles) per weighted layer; cycles None when Vela's rows do not line up."""
    if record is None or record.weights is None:
        return []
    rows = weighted_rows(record.vela) if record.vela else []
    cycles = [record.vela.per_layer[i].op_cycles for i in rows] if len(rows) == len(record.weights.layers) else []
    return [(layer, cycles[k] if cycles else None) for k, layer in enumerate(record.weights.layers)]


def layer_panel(row: Row, fws: list[str]) -> Panel | None:
    per_fw = {f: _layers(row.sides[f].record if f in row.sides and row.sides[f].status == "ok" else None) for f in fws}
    depth = max((len(v) for v in per_fw.values()), default=0)
    if depth == 0:
        return None
    groups = [("layer", len(fws)), ("weights", 1), ("sparsity", len(fws)), ("distinct values", len(fws)), ("cycles", len(fws))]
    columns = fws + ["params"] + fws * 3
    rows = []
    for k in range(depth):
        at = {f: per_fw[f][k] if k < len(per_fw[f]) else None for f in fws}
        params = next((a[0].params for a in at.values() if a), None)
        line = [Value(a[0].name if a else "–") for a in at.values()]
        line.append(Value(num(params)))
        line += [Value(pct(a[0].zeros / a[0].params if a[0].params else 0.0) if a else "–") for a in at.values()]
        line += [Value(num(a[0].unique_values) if a else "–") for a in at.values()]
        line += [Value(num(a[1]) if a and a[1] is not None else "–") for a in at.values()]
        rows.append(line)
    return Panel(title=f"Per layer · {row.label}", caption=CAPTION, groups=groups, columns=columns, rows=rows,
                 sources=("measured", "estimate"))


def layer_panels(section: Section) -> list[Panel]:
    fws = list(section.frontends)
    return [p for row in section.rows if not row.is_float if (p := layer_panel(row, fws)) is not None]
