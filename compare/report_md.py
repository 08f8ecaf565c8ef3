"""report.md: the comparison as GitHub-flavoured Markdown (figures linked as SVG files)."""
from __future__ import annotations

from condition.compare.layout import Panel, cell_rows, empty_notice, header_items, panels
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
    lines.append("|" + "|".join([":---"] + ["---:"] * (len(names) - 1)) + "|")
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
    return "\n".join(parts)


def render_md(comparison: Comparison, sections: list[Section], figures: dict[int, list[Figure]], plot_dir: str = "plots") -> str:
    lines = ["# condition compare — TensorFlow and PyTorch side by side", ""]
    lines += [f"- **{label}:** {_esc(value)}" for label, value in header_items(comparison)]
    lines += ["", READING, "", "## Main table", ""]
    for i, section in enumerate(sections):
        lines.append(section_md(section, figures.get(i, []), plot_dir))
    failed = [r for r in cell_rows(comparison) if r[2] == "failed"]
    if failed:
        lines += ["## Failed cells", "", "| frontend | technique | error | run folder |", "|---|---|---|---|"]
        lines += [f"| {r[0]} | {_esc(r[1])} | {_esc(r[5])} | `{r[4]}` |" for r in failed]
        lines.append("")
    lines += ["## Cells", "", "| frontend | technique | status | seconds | run folder |", "|---|---|---|---:|---|"]
    lines += [f"| {r[0]} | {_esc(r[1])} | {r[2]} | {r[3]} | `{r[4]}` |" for r in cell_rows(comparison)]
    return "\n".join(lines) + "\n"
