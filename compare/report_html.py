"""report.html: one self-contained page (inline CSS, figures as base64 SVG data URIs, no scripts,
no external fonts or links), so it opens offline and can be mailed around as a single file."""
from __future__ import annotations

import base64
import html

from condition.compare.advice import all_advice
from condition.compare.layers import layer_panels
from condition.compare.layout import Panel, Value, cell_rows, empty_notice, header_items, panels, unusable_title
from condition.compare.plots import Figure
from condition.compare.records import Comparison
from condition.compare.report_md import ADVICE_READING, READING, layer_summary
from condition.compare.table import Section

SOURCE_BADGES = {
    "measured": ("measured", "b-measured", "measured on real data or counted on the exported files"),
    "estimate": ("Vela estimate", "b-estimate", "Vela compiler performance estimate, not a measurement"),
    "fvp": ("FVP measured", "b-fvp", "PMU counters from a Corstone FVP run"),
}

CSS = """
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f6f7f9; --card:#fff; --tf:#e8710a; --torch:#3b5bdb; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink); font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif; }
header { background:#111827; color:#f9fafb; padding:26px 28px 22px; }
header h1 { margin:0 0 4px; font-size:24px; font-weight:650; letter-spacing:-.01em; }
header h1 .tf { color:#fdba74; } header h1 .torch { color:#a5b4fc; }
header p.sub { margin:0 0 18px; color:#9ca3af; }
dl.facts { display:grid; grid-template-columns:max-content 1fr; gap:4px 18px; margin:0; font-size:13px; }
dl.facts dt { color:#9ca3af; } dl.facts dd { margin:0; color:#f3f4f6; }
main { max-width:1600px; margin:0 auto; padding:22px 28px 60px; }
.reading { background:#fff; border:1px solid var(--line); border-left:4px solid #6366f1; border-radius:8px; padding:12px 16px;
  color:#374151; font-size:13px; }
h2 { font-size:19px; margin:34px 0 6px; }
h2 small { color:var(--muted); font-weight:400; font-size:13px; }
.card { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:16px 18px; margin:16px 0;
  box-shadow:0 1px 2px rgba(0,0,0,.03); }
.card h3 { margin:0 0 2px; font-size:15px; display:flex; gap:8px; align-items:center; flex-wrap:wrap; }
.card p.caption { margin:2px 0 12px; color:var(--muted); font-size:12.5px; }
.badge { font-size:11px; font-weight:600; border-radius:999px; padding:1px 8px; letter-spacing:.01em; }
.b-measured { background:#dcfce7; color:#166534; } .b-estimate { background:#fef3c7; color:#92400e; }
.b-fvp { background:#e0e7ff; color:#3730a3; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:12.5px; font-variant-numeric:tabular-nums; }
th, td { padding:5px 7px; border-bottom:1px solid var(--line); white-space:nowrap; }
thead th { background:#f9fafb; font-weight:600; color:#374151; text-align:right; }
thead tr.groups th { text-align:center; border-bottom:2px solid #d1d5db; font-size:12px; }
thead tr.groups th.empty { border-bottom:1px solid var(--line); }
th.col-tf { color:var(--tf); } th.col-torch { color:var(--torch); }
td { text-align:right; } td:first-child, th:first-child { text-align:left; position:sticky; left:0; background:inherit; }
tbody tr { background:#fff; } tbody tr:nth-child(even) { background:#fafafa; }
tbody tr:hover { background:#f3f4f6; }
td.group-start, th.group-start { border-left:1px solid var(--line); }
td.muted { color:#9ca3af; } td.span { text-align:center; font-style:italic; }
td.failed { color:#b91c1c; font-weight:600; } td.failed-dim { color:#e3a3a3; }
td.text, th.text { text-align:left; white-space:normal; } td.left, th.left { text-align:left; } .notice p { margin:0; color:#991b1b; }
td.worse-tf { background:#ffedd5; color:#9a3412; } td.worse-torch { background:#e0e7ff; color:#3730a3; }
td.better { background:#dcfce7; color:#166534; } td.worse { background:#fee2e2; color:#991b1b; }
td.float { color:#6b7280; font-style:italic; } td.baseline { font-weight:600; }
ul.notes { margin:10px 0 0; padding-left:18px; color:var(--muted); font-size:12px; }
.legend { display:flex; gap:14px; flex-wrap:wrap; font-size:12px; color:var(--muted); margin:10px 0 0; }
.legend span.sw { display:inline-block; width:12px; height:12px; border-radius:3px; vertical-align:-2px; margin-right:5px; }
.figs { display:grid; grid-template-columns:repeat(auto-fit, minmax(560px, 1fr)); gap:16px; }
.figs .card { margin:0; } .figs img { width:100%; height:auto; display:block; }
.figs .wide { grid-column:1 / -1; } .figs .wide img { max-width:1100px; margin:0 auto; }
details { margin-top:26px; } summary { cursor:pointer; font-weight:600; }
code { font-size:12px; background:#f3f4f6; padding:1px 5px; border-radius:4px; }
footer { color:var(--muted); font-size:12px; margin-top:30px; }
"""

LEGEND = """<div class="legend"><span><span class="sw" style="background:#ffedd5"></span>tf / torch: TensorFlow side loses</span>
<span><span class="sw" style="background:#e0e7ff"></span>PyTorch side loses</span>
<span><span class="sw" style="background:#dcfce7"></span>better than the framework's int8 baseline</span>
<span><span class="sw" style="background:#fee2e2"></span>worse than it</span></div>"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def badges(sources: tuple[str, ...]) -> str:
    out = []
    for s in sources:
        label, css, title = SOURCE_BADGES[s]
        out.append(f'<span class="badge {css}" title="{_e(title)}">{_e(label)}</span>')
    return " ".join(out)


def _group_starts(panel: Panel) -> set[int]:
    starts, i = set(), 0
    for _, span in panel.groups:
        starts.add(i)
        i += span
    return starts


def _td(v: Value, index: int, starts: set[int], colspan: int = 1, left: bool = False) -> str:
    classes = [c for c in v.css.split() if c] + (["group-start"] if index in starts and index else []) + (["left"] if left else [])
    attrs = f' class="{" ".join(classes)}"' if classes else ""
    attrs += f' title="{_e(v.note)}"' if v.note else ""
    attrs += f' colspan="{colspan}"' if colspan > 1 else ""
    return f"<td{attrs}>{_e(v.text)}</td>"


def panel_html(panel: Panel) -> str:
    starts = _group_starts(panel)
    groups = "".join(
        f'<th colspan="{span}" class="{"empty" if not g else ""}{" group-start" if i else ""}">{_e(g)}</th>'
        for i, (g, span) in enumerate(panel.groups))
    left = set(range(1, panel.text_columns))  # the first column is set flush left by the style sheet
    heads = "".join(f'<th class="col-{_e(c)}{" group-start" if i in starts and i else ""}{" left" if i in left else ""}">{_e(c)}</th>'
                    for i, c in enumerate(panel.columns))
    body = []
    for row in panel.rows:
        cells = []
        i = 0
        while i < len(row):
            v = row[i]
            span = 1
            while "span" in v.css.split() and i + span < len(row) and row[i + span].css == "skip":
                span += 1
            cells.append(_td(v, i, starts, span, i in left))
            i += span
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f"<li>{_e(n)}</li>" for n in panel.footnotes)
    return (f'<section class="card"><h3>{_e(panel.title)} {badges(panel.sources)}</h3>'
            f'<p class="caption">{_e(panel.caption)}</p><div class="scroll"><table>'
            f'<thead><tr class="groups">{groups}</tr><tr>{heads}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'
            + (f'<ul class="notes">{notes}</ul>' if notes else "") + "</section>")


def figure_html(fig: Figure) -> str:
    data = base64.b64encode(fig.svg.encode()).decode()
    return (f'<figure class="card{" wide" if fig.wide else ""}"><h3>{_e(fig.title)} {badges(fig.sources)}</h3>'
            f'<img alt="{_e(fig.title)}" src="data:image/svg+xml;base64,{data}">'
            f'<p class="caption">{_e(fig.caption)}</p></figure>')


def section_html(section: Section, figures: list[Figure]) -> str:
    parts = [f"<h2>{_e(section.model)} on {_e(section.dataset)} <small>{_e(section.title)}</small></h2>"]
    notice = empty_notice(section)
    if notice:
        parts.append(f'<section class="card notice"><p>{_e(notice)}</p></section>')
        return "\n".join(parts)
    parts += [panel_html(p) for p in panels(section)]
    parts.append(LEGEND)
    if figures:
        parts.append('<div class="figs">' + "".join(figure_html(f) for f in figures) + "</div>")
    per_layer = layer_panels(section)
    if per_layer:
        parts.append("<details><summary>Per-layer figures, tf and torch side by side</summary>"
                     + "".join(panel_html(p) for p in per_layer) + "</details>")
    return "\n".join(parts)


def _vs(value: int | None, dense: int) -> str:
    if value is None:
        return "–"
    return f"{value:,} <small>×{value / dense:.2f}</small>" if dense else f"{value:,}"


def advice_html(comparison: Comparison, sections: list[Section]) -> str:
    """The optional "Advice vs measured" cards (only where advice files exist)."""
    pairs = all_advice(comparison, sections)
    if not pairs:
        return ""
    parts = [f'<h2>Advice vs measured <small>condition advise on the int8 baseline, before any technique ran</small></h2>'
             f'<p class="reading">{_e(ADVICE_READING)}</p>']
    for section, table in pairs:
        a = table.advice
        dense_c, dense_w = a.dense["total_cycles"], a.dense["encoded_weight_bytes"]
        body = []
        for r in table.rows:
            css = "better" if r.cycles_ratio is not None and r.cycles_ratio <= 1.1 else ("worse" if r.cycles_ratio is not None else "muted")
            ratio = f"{r.cycles_ratio:.2f}" if r.cycles_ratio is not None else "–"
            body.append(f"<tr><td class='text'>{_e(r.label)}</td>"
                        f"<td>{_vs(r.predicted_cycles, dense_c)}</td><td>{_vs(r.achieved_cycles, dense_c)}</td>"
                        f"<td class='{css}'>{ratio}</td>"
                        f"<td>{_vs(r.predicted_weights, dense_w)}</td><td>{_vs(r.achieved_weights, dense_w)}</td>"
                        f"<td class='text'>{_e(r.verdict)}</td></tr>")
        table_html = ('<div class="scroll"><table><thead><tr><th class="text">technique</th>'
                      '<th>predicted cycles ≥</th><th>achieved cycles</th><th>achieved / predicted</th>'
                      '<th>predicted encoded weights ≥</th><th>achieved encoded weights</th><th class="text">advice</th>'
                      f'</tr></thead><tbody>{"".join(body)}</tbody></table></div>') if body else \
            "<p class='caption'>No single-technique prune, 2:4 or cluster row ran for this frontend.</p>"
        order = (f"<ul class='notes'><li>Predicted order, fewest cycles first: {_e(' < '.join(table.predicted_order))}; "
                 f"achieved: {_e(' < '.join(table.achieved_order)) or '–'}</li></ul>") if body else ""
        parts.append(f'<section class="card"><h3>{_e(section.model)} · {_e(a.target.get("accelerator"))} · {_e(table.frontend)} '
                     f'{badges(("estimate",))}</h3><p class="caption">{_e(a.verdict)} Layers at the Target: {_e(layer_summary(table))}.</p>'
                     f'{table_html}{order}</section>')
    return "\n".join(parts)


def render_html(comparison: Comparison, sections: list[Section], figures: dict[int, list[Figure]]) -> str:
    facts = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in header_items(comparison))
    body = [section_html(s, figures.get(i, [])) for i, s in enumerate(sections)]
    body.append(advice_html(comparison, sections))
    rows = cell_rows(comparison)
    failed = [r for r in rows if r[2] in ("failed", "flagged")]
    if failed:
        items = "".join(f"<tr><td>{_e(r[0])}</td><td class='text'>{_e(r[1])}</td><td class='failed text'>{_e(r[5])}</td>"
                        f"<td class='text'><code>{_e(r[4])}</code></td></tr>" for r in failed)
        flagged = (" Flagged cells ran to the end, but their figures cannot be right; the same configuration gives the same"
                   " result, so a re-run does not retry them." if any(r[2] == "flagged" for r in failed) else "")
        body.append(f'<section class="card"><h3>{unusable_title(failed)}</h3><p class="caption">Recorded with their error; '
                    f'the other cells ran. Re-running <code>condition compare</code> retries the failed ones.{flagged}</p>'
                    '<div class="scroll"><table>'
                    '<thead><tr><th>frontend</th><th class="text">technique</th><th class="text">error</th>'
                    f'<th class="text">run folder</th></tr></thead><tbody>{items}</tbody></table></div></section>')
    cells = "".join(f"<tr><td>{_e(r[0])}</td><td class='text'>{_e(r[1])}</td>"
                    f"<td class='{'failed' if r[2] in ('failed', 'flagged') else ''}'>{_e(r[2])}</td>"
                    f"<td>{_e(r[3])}</td><td class='text'><code>{_e(r[4])}</code></td></tr>" for r in rows)
    body.append(f'<details><summary>All {len(rows)} cells (status, wall time, run folder)</summary><div class="card scroll"><table>'
                '<thead><tr><th>frontend</th><th class="text">technique</th><th>status</th><th>seconds</th>'
                f'<th class="text">run folder</th></tr></thead><tbody>{cells}</tbody></table></div></details>')
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>condition compare — TensorFlow and PyTorch on Ethos-U</title><style>{CSS}</style></head>
<body><header><h1>condition compare — <span class="tf">TensorFlow</span> and <span class="torch">PyTorch</span> side by side</h1>
<p class="sub">Every technique conditioned by both frontends, compiled for the same Ethos-U Target, measured on one backend.</p>
<dl class="facts">{facts}</dl></header>
<main><p class="reading">{_e(READING)}</p>
{"".join(body)}
<footer>Generated by condition from the metrics records in <code>{_e(comparison.out)}</code>;
re-render with <code>condition report {_e(comparison.out)}</code>.</footer>
</main></body></html>
"""
