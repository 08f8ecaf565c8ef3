"""report.md: the comparison as GitHub-flavoured Markdown (figures linked as SVG files)."""
from __future__ import annotations

from condition.compare.advice import AdviceTable, all_advice
from condition.compare.layers import layer_panels
from condition.compare.layout import Panel, cell_rows, empty_notice, header_items, panels, unusable_title
from condition.compare.plots import Figure
from condition.compare.records import Comparison
from condition.compare.table import Section

READING = (
    "How to read it: accuracy is measured (each frontend's int8 evaluator on the test images); sparsity and unique "
    "weights are counted on the exported int8 weights; encoded weights, cycles and memory traffic are Vela "
    "estimates, not measurements (FVP columns appear only when a run was measured on an FVP). The float row is "
    "each framework's trained float32 model before conditioning: its accuracy is the reference the int8 models "
    "lose against, and it has no NPU figures because Vela compiles int8 models only. Ratios divide by each "
    "framework's own post-training-quant row (its int8 baseline); tf / torch divides TensorFlow's figure by "
    "PyTorch's for the same technique (above 1: TensorFlow's pipeline gives more bytes or cycles)."
)


ADVICE_READING = (
    "What `condition advise` predicted from each framework's dense int8 model before any technique ran, next to "
    "what the runs then reached. Predicted figures are best cases from Vela's per-layer estimates and the stated rules "
    "(recomputed at each row's own sparsity or cluster count); achieved figures are the runs' Vela estimates. "
    "achieved / predicted: about 1 = the bound was reached, above 1 = the technique fell short of it, below 1 = the "
    "estimate was too pessimistic."
)


def _esc(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def panel_md(panel: Panel) -> str:
    names = []
    i = 0
    for group, span in panel.groups:
        for _ in range(span):
            col = panel.columns[i]
            names.append(f"{group} {col}".strip() if group else col)
            i += 1
    lines = [f"#### {panel.title}", "", panel.caption, ""]
    lines.append("| " + " | ".join(_esc(n) for n in names) + " |")
    text = max(panel.text_columns, 1)
    lines.append("|" + "|".join([":---"] * text + ["---:"] * (len(names) - text)) + "|")
    for row in panel.rows:
        texts = [v.text for v in row if v.css != "skip"]
        texts += [""] * (len(names) - len(texts))
        lines.append("| " + " | ".join(_esc(t) for t in texts) + " |")
    if panel.footnotes:
        lines.append("")
        lines += [f"- {_esc(n)}" for n in panel.footnotes]
    return "\n".join(lines)


def section_md(section: Section, figures: list[Figure], plot_dir: str) -> str:
    parts = [f"### {section.title}", ""]
    if empty_notice(section):
        parts += [f"*{empty_notice(section)}*", ""]
    parts += [panel_md(p) + "\n" for p in panels(section)]
    for fig in figures:
        parts += [f"#### {fig.title}", "", f"![{fig.title}]({plot_dir}/{fig.name}.svg)", "", fig.caption, ""]
    parts += [panel_md(p) + "\n" for p in layer_panels(section)]
    return "\n".join(parts)


def _vs(value: int | None, dense: int) -> str:
    if value is None:
        return "–"
    return f"{value:,} (×{value / dense:.2f})" if dense else f"{value:,}"


def layer_summary(table: AdviceTable) -> str:
    """'2 weight-bound (99 % of cycles), 1 MAC-bound (1 %)' for the advice's layers."""
    parts = []
    for bound, label in (("weight", "weight-bound"), ("memory", "memory-bound"), ("mac", "MAC-bound")):
        layers = [l for l in table.advice.layers if l.bound == bound]
        if layers:
            parts.append(f"{len(layers)} {label} ({sum(l.share for l in layers):.0%} of cycles)")
    return ", ".join(parts)


def advice_md(comparison: Comparison, sections: list[Section]) -> list[str]:
    """The optional "Advice vs measured" section (only where advice files exist)."""
    pairs = all_advice(comparison, sections)
    if not pairs:
        return []
    lines = ["## Advice vs measured", "", ADVICE_READING, ""]
    for section, table in pairs:
        a = table.advice
        dense_c, dense_w = a.dense["total_cycles"], a.dense["encoded_weight_bytes"]
        lines += [f"### {section.model} · {a.target.get('accelerator')} · {table.frontend}", "",
                  f"*Predicted (Vela estimate):* {_esc(a.verdict)}", "", f"Layers at the Target: {layer_summary(table)}.", ""]
        if not table.rows:
            lines += ["*No single-technique prune, 2:4 or cluster row ran for this frontend.*", ""]
            continue
        lines += ["| technique | predicted cycles ≥ | achieved cycles | achieved / predicted | predicted encoded weights ≥ "
                  "| achieved encoded weights | advice |", "|:---|---:|---:|---:|---:|---:|:---|"]
        for r in table.rows:
            ratio = f"{r.cycles_ratio:.2f}" if r.cycles_ratio is not None else "–"
            lines.append(f"| {_esc(r.label)} | {_vs(r.predicted_cycles, dense_c)} | {_vs(r.achieved_cycles, dense_c)} | {ratio} "
                         f"| {_vs(r.predicted_weights, dense_w)} | {_vs(r.achieved_weights, dense_w)} | {_esc(r.verdict)} |")
        lines += ["", f"- Predicted order, fewest cycles first: {_esc(' < '.join(table.predicted_order))}; "
                      f"achieved: {_esc(' < '.join(table.achieved_order)) or '–'}", ""]
    return lines


def render_md(comparison: Comparison, sections: list[Section], figures: dict[int, list[Figure]], plot_dir: str = "plots") -> str:
    lines = ["# condition compare — TensorFlow and PyTorch side by side", ""]
    lines += [f"- **{label}:** {_esc(value)}" for label, value in header_items(comparison)]
    lines += ["", READING, "", "## Main table", ""]
    for i, section in enumerate(sections):
        lines.append(section_md(section, figures.get(i, []), plot_dir))
    lines += advice_md(comparison, sections)
    failed = [r for r in cell_rows(comparison) if r[2] in ("failed", "flagged")]
    if failed:
        lines += [f"## {unusable_title(failed)}", "", "| frontend | technique | error | run folder |", "|---|---|---|---|"]
        lines += [f"| {r[0]} | {_esc(r[1])} | {_esc(r[5])} | `{r[4]}` |" for r in failed]
        lines.append("")
    lines += ["## Cells", "", "| frontend | technique | status | seconds | run folder |", "|---|---|---|---:|---|"]
    lines += [f"| {r[0]} | {_esc(r[1])} | {r[2]} | {r[3]} | `{r[4]}` |" for r in cell_rows(comparison)]
    return "\n".join(lines) + "\n"
