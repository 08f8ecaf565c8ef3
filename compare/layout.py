"""The main table's panels as display strings, shared by the Markdown and HTML writers so both
show the same numbers with the same rounding. Each panel names the source of its figures.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from condition.backend.budget import MISFIT, Limits, format_size, needs
from condition.backend.metrics import MetricsRecord
from condition.compare.records import Comparison
from condition.compare.table import Row, Section, Side

# A ratio further than this from 1 is highlighted as one side losing.
RATIO_MARGIN = 0.05
ACCURACY_MARGIN = 0.005  # half an accuracy point


@dataclass(frozen=True)
class Value:
    text: str
    note: str = ""  # tooltip in HTML (e.g. the evaluator)
    css: str = ""  # "worse-tf", "worse-torch", "better", "worse", "muted", "failed"


@dataclass(frozen=True)
class Panel:
    title: str
    caption: str
    groups: list[tuple[str, int]]  # header group label and how many columns it spans
    columns: list[str]
    rows: list[list[Value]]
    footnotes: list[str] = field(default_factory=list)
    sources: tuple[str, ...] = ()  # "measured", "estimate" (Vela), "fvp" (measured on an FVP)
    text_columns: int = 1  # how many leading columns hold text (names), set flush left


# ---- number formats --------------------------------------------------------------------------

def num(n: float | None) -> str:
    return "–" if n is None else f"{n:,.0f}"


def kib(n: float | None) -> str:
    return "–" if n is None else f"{n / 1024:,.1f} KiB"


def pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f} %"


def points(d: float | None) -> str:
    return "–" if d is None else f"{d * 100:+.1f} pp".replace("-", "−")


def times(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


# ---- panels ----------------------------------------------------------------------------------

def _status_value(side: Side, strong: bool = False) -> Value | None:
    """A side without figures; `strong` marks the one cell per panel that draws the eye."""
    if side.status == "ok":
        return None
    if side.status in ("failed", "flagged"):
        return Value(side.status, side.error or "", "failed" if strong else "failed-dim")
    return Value(side.status if side.status != "absent" else "–", "", "muted")


def _side(side: Side, text: str, note: str = "", strong: bool = False) -> Value:
    return _status_value(side, strong) or Value(text, note, "muted" if text == "–" else "")


def _vs_torch(r: float | None, smaller_is_better: bool = True) -> Value:
    if r is None:
        return Value("–", "", "muted")
    css = ""
    if r > 1 + RATIO_MARGIN:
        css = "worse-tf" if smaller_is_better else "worse-torch"
    elif r < 1 - RATIO_MARGIN:
        css = "worse-torch" if smaller_is_better else "worse-tf"
    return Value(times(r), "tf ÷ torch", css)


def _acc_diff(d: float | None, worse_css: str = "worse-tf", better_css: str = "worse-torch") -> Value:
    if d is None:
        return Value("–", "", "muted")
    css = worse_css if d < -ACCURACY_MARGIN else better_css if d > ACCURACY_MARGIN else ""
    return Value(points(d), "", css)


def _vs_base(r: float | None) -> Value:
    if r is None:
        return Value("–", "", "muted")
    css = "better" if r < 1 - RATIO_MARGIN else "worse" if r > 1 + RATIO_MARGIN else ""
    return Value(times(r), "÷ the same framework's post-training-quant", css)


def _label(row: Row) -> Value:
    if row.is_float:
        return Value("float (reference)", "float32 model before conditioning; Vela compiles int8 only", "float")
    if row.is_baseline:
        return Value(f"{row.label} (int8 baseline)", "the baseline of the ratio panel", "baseline")
    return Value(row.label)


def _accuracy(side: Side) -> Value:
    if side.accuracy is None:
        return _side(side, "–", strong=True)
    note = f"{side.accuracy_kind}: {side.evaluator}, {side.images:,} images" if side.images else side.evaluator
    return _side(side, pct(side.accuracy), note, strong=True)


def panels(section: Section) -> list[Panel]:
    """The main table's panels; none when no cell of the section has figures (see `empty_notice`)."""
    if empty_notice(section):
        return []
    fws = list(section.frontends)
    both = {"tf", "torch"} <= set(fws)
    out = [_size_panel(section, fws, both), _npu_panel(section, fws, both)]
    if any(r.is_baseline for r in section.rows):
        out.append(_baseline_panel(section, fws))
    if any(_fit_record(s) is not None and s.record.vela and s.record.vela.sram_used_bytes is not None
           for r in section.rows for s in r.sides.values()):
        out.append(_memory_panel(section, fws))
    return out


def empty_notice(section: Section) -> str:
    """One sentence instead of tables full of "failed" when nothing in a section produced figures."""
    statuses = {side.status for row in section.rows if not row.is_float for side in row.sides.values()} - {"absent"}
    if "ok" in statuses:
        return ""
    if statuses == {"not run"}:
        return "No cell of this section has run yet."
    return "Every cell of this section failed or was flagged (reasons under Failed cells); there are no figures to compare."


def _pair(label: str, fws: list[str], both: bool, compare: str | None) -> tuple[list[tuple[str, int]], list[str]]:
    cols = fws + ([compare] if both and compare else [])
    return [(label, len(cols))], cols


def _size_panel(section: Section, fws: list[str], both: bool) -> Panel:
    groups, columns = [("", 1)], ["technique"]
    for label, compare in (("int8 accuracy", "tf − torch"), ("sparsity", None), ("unique weights / layer", None),
                           ("NPU-encoded weights", "tf / torch"), ("deployable artifact", "tf / torch")):
        g, c = _pair(label, fws, both, compare)
        groups += g
        columns += c
    rows = []
    for row in section.rows:
        cells = [_label(row)]
        s = row.sides
        cells += [_accuracy(s[f]) for f in fws] + ([_acc_diff(row.tf_over_torch.get("accuracy"))] if both else [])
        cells += [_side(s[f], pct(s[f].sparsity)) for f in fws]
        cells += [_side(s[f], num(s[f].max_unique_values)) for f in fws]
        cells += [_side(s[f], kib(s[f].encoded_weight_bytes), f"{num(s[f].encoded_weight_bytes)} B") for f in fws]
        cells += [_vs_torch(row.tf_over_torch.get("encoded_weight_bytes"))] if both else []
        cells += [_side(s[f], kib(s[f].artifact_bytes), _artifact_note(s[f])) for f in fws]
        cells += [_vs_torch(row.tf_over_torch.get("artifact_bytes"))] if both else []
        rows.append(cells)
    kinds = sorted({f"{f}: {_artifact_note(r.sides[f])}" for r in section.rows for f in fws if r.sides[f].artifact_kind})
    return Panel(
        "Accuracy, sparsity and size",
        "Accuracy: measured on the test images by each frontend's int8 evaluator (hover for evaluator and image count). "
        "Sparsity and unique values: measured on the exported int8 weights. Encoded weights: Vela estimate. "
        "Artifact: file size of what goes onto the device.",
        groups, columns, rows,
        footnotes=_evaluator_notes(section, fws) + (["artifacts — " + "; ".join(kinds)] if kinds else []),
        sources=("measured", "estimate"),
    )


def _artifact_note(side: Side) -> str:
    names = {"vela_tflite": "Vela-compiled _vela.tflite", "tflite": "int8 .tflite", "pte": "ExecuTorch .pte (Ethos-U delegate)"}
    return names.get(side.artifact_kind, side.artifact_kind)


def _evaluator_notes(section: Section, fws: list[str]) -> list[str]:
    notes = []
    for f in fws:
        seen = {(s.accuracy_kind, s.evaluator, s.images) for r in section.rows if (s := r.sides[f]).accuracy is not None}
        if seen:
            notes.append(f"{f} accuracy — " + "; ".join(f"{k}: {e} on {n:,} images" for k, e, n in sorted(seen, key=str)))
    return notes


def _npu_panel(section: Section, fws: list[str], both: bool) -> Panel:
    groups, columns = [("", 1)], ["technique"]
    spec = [("NPU cycles", "tf / torch"), ("total cycles", "tf / torch"), ("inference ms", None),
            ("DRAM traffic", None), ("flash traffic", None), ("ops NPU / CPU", None)]
    if section.has_fvp:
        spec.append(("NPU active cycles — FVP measured", "tf / torch"))
    for label, compare in spec:
        g, c = _pair(label, fws, both, compare)
        groups += g
        columns += c
    rows = []
    for row in section.rows:
        s = row.sides
        cells = [_label(row)]
        if row.is_float:  # nothing to compile: say so once instead of a row of dashes
            span = len(columns) - 1
            note = Value("no NPU figures: Vela compiles int8 models only", "", "muted span")
            rows.append(cells + [note] + [Value("", "", "skip")] * (span - 1))
            continue
        cells += [_side(s[f], num(s[f].npu_cycles), strong=True) for f in fws]
        cells += [_vs_torch(row.tf_over_torch.get("npu_cycles"))] if both else []
        cells += [_side(s[f], num(s[f].total_cycles)) for f in fws]
        cells += [_vs_torch(row.tf_over_torch.get("total_cycles"))] if both else []
        cells += [_side(s[f], ms(s[f].inference_ms)) for f in fws]
        cells += [_side(s[f], kib(s[f].dram_bytes)) for f in fws]
        cells += [_side(s[f], kib(s[f].flash_bytes)) for f in fws]
        cells += [_side(s[f], "–" if s[f].ops_on_npu is None else f"{s[f].ops_on_npu} / {s[f].ops_on_cpu}") for f in fws]
        if section.has_fvp:
            cells += [_side(s[f], num(s[f].fvp_npu_active_cycles)) for f in fws]
            cells += [_vs_torch(_fvp_ratio(s))] if both else []
        rows.append(cells)
    return Panel(
        "NPU performance — Vela estimate" + (" and FVP measurement" if section.has_fvp else ""),
        "Cycles, inference time and memory traffic are Vela 5.1 compiler estimates for this Target, not measurements"
        + ("; the FVP columns are measured PMU counters." if section.has_fvp else ".")
        + " Ops: operators placed on the NPU vs left on the CPU.",
        groups, columns, rows,
        sources=("estimate", "fvp") if section.has_fvp else ("estimate",),
    )


def _fit_record(side: Side) -> MetricsRecord | None:
    """The record behind a side whose figures are real: ok, or flagged only for not fitting a limit."""
    r = side.record
    if r is None or side.status not in ("ok", "flagged"):
        return None
    return r if side.status == "ok" or all(p.startswith(MISFIT) for p in r.problems) else None


def _memory_panel(section: Section, fws: list[str]) -> Panel:
    """Footprint by technique, both frameworks side by side; figures over the section's limits marked."""
    records = [r for row in section.rows for s in row.sides.values() if (r := _fit_record(s)) is not None]
    limits = next((Limits.from_dict(r.limits) for r in records if r.limits), Limits())
    groups, columns = [("", 1)], ["technique"]
    for label in ("SRAM used — Vela", "deployed file (flash)", "arena / scratch — file", "runtime pool ≥ — file"):
        groups.append((label, len(fws)))
        columns += fws
    rows = []
    for row in section.rows:
        if row.is_float:
            continue
        cells = [_label(row)]
        got = {f: _fit_record(row.sides[f]) for f in fws}
        for key in ("sram", "flash", "arena", "pool"):
            for f in fws:
                r = got[f]
                if r is None:
                    cells.append(_status_value(row.sides[f]) or Value("–", "", "muted"))
                    continue
                n, m = needs(r), r.memory
                value, limit, note = {
                    "sram": (n.sram_bytes, limits.sram_bytes, f"{num(n.sram_bytes)} B; weights in {r.vela.weights_storage_area}"
                             if r.vela else ""),
                    "flash": (n.flash_bytes, limits.flash_bytes, f"{num(n.flash_bytes)} B"),
                    "arena": (None if m is None else m.scratch_bytes + m.fast_scratch_bytes, None,
                              "Vela scratch tensors of the .tflite" if m and m.artifact == "vela_tflite"
                              else "Ethos-U delegate scratch_size"),
                    "pool": (None if m is None else m.planned_bytes, None,
                             "TFLite Micro tensor arena: non-constant tensors, 16 B aligned, without its bookkeeping"
                             if m and m.artifact == "vela_tflite" else "method allocator pool: the .pte's memory plan"),
                }[key]
                over = value is not None and limit is not None and value > limit
                text = "–" if value is None else format_size(value) + (f" > {format_size(limit)}" if over else "")
                cells.append(Value(text, note + ("; over the limit" if over else ""),
                                   "worse" if over else "muted" if value is None else ""))
        rows.append(cells)
    areas = sorted({f"{r.vela.memory_mode}: weights in {r.vela.weights_storage_area}, arena in {r.vela.feature_map_storage_area}"
                    for r in records if r.vela and r.vela.feature_map_storage_area})
    return Panel(
        "Memory footprint" + (f" — limits: {limits.describe()}" if limits else ""),
        "SRAM used: Vela's allocation estimate (Sram_Only: with the weights). Deployed file: the Vela .tflite / .pte size, what "
        "goes to flash. Arena / scratch and runtime pool: read from the deployed file (tf: Vela's scratch tensors and TFLite "
        "Micro's tensor arena; torch: the Ethos-U delegate's scratch and the method's memory plan, the sizes for "
        "arm_executor_runner's scratch and method allocator pools)." + (" Figures over a limit are marked." if limits else ""),
        groups, columns, rows, footnotes=areas, sources=("estimate", "measured"),
    )


def _fvp_ratio(sides: dict[str, Side]) -> float | None:
    a, b = sides["tf"].fvp_npu_active_cycles, sides["torch"].fvp_npu_active_cycles
    return None if a is None or not b else a / b


def _baseline_panel(section: Section, fws: list[str]) -> Panel:
    metrics = [("accuracy", "accuracy Δ"), ("encoded_weight_bytes", "encoded weights"), ("npu_cycles", "NPU cycles"),
               ("total_cycles", "total cycles"), ("artifact_bytes", "artifact")]
    groups = [("", 1)] + [(f"{f} ÷ baseline", len(metrics)) for f in fws]
    columns = ["technique"] + [m[1] for _ in fws for m in metrics]
    rows = []
    for row in section.rows:
        cells = [_label(row)]
        for f in fws:
            vs = row.vs_baseline.get(f, {})
            for key, _ in metrics:
                status = _status_value(row.sides[f], strong=key == "accuracy")
                if status is not None:
                    cells.append(status)
                elif key == "accuracy":
                    cells.append(_acc_diff(vs.get(key), "worse", "better"))
                else:
                    cells.append(_vs_base(vs.get(key)))
        rows.append(cells)
    return Panel(
        "Against each framework's own int8 baseline",
        "Each framework's figures divided by its own post-training-quant row (accuracy: difference in points). "
        "Sizes are Vela estimates / file sizes, cycles Vela estimates, accuracy measured.",
        groups, columns, rows,
        sources=("measured", "estimate"),
    )


# ---- header ----------------------------------------------------------------------------------

def header_items(comparison: Comparison) -> list[tuple[str, str]]:
    """(label, value) lines naming what every figure depends on: Target, tools, seed, data."""
    entries = comparison.entries
    records = [e.record for e in entries if e.record is not None]
    targets = sorted({e.target.label() for e in entries})
    versions: dict[str, set[str]] = {}
    for r in records:
        for name, v in r.versions.items():
            versions.setdefault(name, set()).add(v)
    shown = ("ethos-u-vela", "tensorflow", "tf-keras", "tensorflow-model-optimization", "torch", "executorch", "torchao", "tosa-tools",
             "condition")
    tools = ", ".join(f"{n} {'/'.join(sorted(versions[n]))}" for n in shown if n in versions)
    limits = sorted({(e.train_limit, e.eval_limit) for e in entries}, key=str)
    counts = {s: sum(1 for e in entries if e.status == s) for s in ("ok", "failed", "flagged", "not run")}
    items = [
        ("Target", "; ".join(targets)),
        ("Model · data set", ", ".join(sorted({f"{e.model} · {e.dataset}" for e in entries}))),
        ("Seed · epochs", ", ".join(sorted({f"seed {e.seed} · {e.epochs} epoch{'s' if e.epochs != 1 else ''}" for e in entries}))),
        ("Subsets", ", ".join(f"train {_limit(t)} · test {_limit(v)}" for t, v in limits)),
        ("Tools", tools or "–"),
        ("Cells", f"{counts['ok']} ok, {counts['failed']} failed, "
                  + (f"{counts['flagged']} flagged (figures that cannot be right, or over a limit), " if counts["flagged"] else "")
                  + f"{counts['not run']} not run"),
        ("Recipe", comparison.recipe or "–"),
    ]
    return items


def _limit(n: int | None) -> str:
    return "all images" if n is None else f"first {n:,} images"


def _why(e) -> str:
    """A failed cell's error, or what is flagged in a cell whose figures cannot be right."""
    if e.record is None or e.status not in ("failed", "flagged"):
        return ""
    return ("flagged: " if e.status == "flagged" else "") + (e.record.reason or "")


def unusable_title(rows: list[list[str]]) -> str:
    return "Failed and flagged cells" if any(r[2] == "flagged" for r in rows) else "Failed cells"


def cell_rows(comparison: Comparison) -> list[list[str]]:
    """One line per cell for the appendix: what ran, how it went, how long, where it is."""
    rows = []
    for e in comparison.entries:
        r = e.record
        seconds = r.step_seconds.get("total") if r is not None and e.status != "not run" else None
        where = e.run_dir.relative_to(comparison.out) if e.run_dir.is_relative_to(comparison.out) else e.run_dir
        rows.append([e.frontend, e.label, e.status, "–" if seconds is None else f"{seconds:,.1f}", str(where),
                     _why(e)])
    return rows

