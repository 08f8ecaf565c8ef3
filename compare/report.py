"""Write every report file of a comparison from its saved records (no runs happen here).

    paths = write_report("runs/compare")   # report.md, report.html, results.csv, results.json, plots/*.svg
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from condition.backend.atomic import write_text_atomic
from condition.compare.report_csv_json import render_csv, render_json, result_rows
from condition.compare.plots import Figure, figures
from condition.compare.records import Comparison, load_comparison
from condition.compare.report_html import render_html
from condition.compare.report_md import render_md
from condition.compare.table import build_sections

PLOT_DIR = "plots"


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    csv: Path
    json: Path
    plots: tuple[Path, ...]


def write_report(out: str | Path, comparison: Comparison | None = None) -> ReportFiles:
    out = Path(out)
    comparison = comparison or load_comparison(out)
    sections = build_sections(comparison)
    figs: dict[int, list[Figure]] = {i: figures(s, prefix=f"{i + 1}-" if len(sections) > 1 else "") for i, s in enumerate(sections)}
    plot_dir = out / PLOT_DIR
    plot_dir.mkdir(parents=True, exist_ok=True)
    plots = []
    for fig_list in figs.values():
        for fig in fig_list:
            plots.append(write_text_atomic(plot_dir / f"{fig.name}.svg", fig.svg))
    rows = result_rows(comparison, sections)
    return ReportFiles(
        markdown=write_text_atomic(out / "report.md", render_md(comparison, sections, figs, PLOT_DIR)),
        html=write_text_atomic(out / "report.html", render_html(comparison, sections, figs)),
        csv=write_text_atomic(out / "results.csv", render_csv(rows)),
        json=write_text_atomic(out / "results.json", render_json(comparison, rows)),
        plots=tuple(plots),
    )
