"""The report of a `condition search` (OUT/search.json + the trials' run folders): Pareto fronts
per frontend side by side (accuracy vs encoded weights, accuracy vs cycles), the best model of each
frontend with its ratios to the dense reference (the search's own dense int8 run) and to its
same-epochs baseline, each labelled, and the command line that reproduces it.

    files = write_search_report("runs/search")   # search.md, search.html, plots/search-pareto.svg
"""
from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

from condition.backend.atomic import write_text_atomic
from condition.backend.target import Target
from condition.backend.budget import Limits
from condition.compare.plots import COLORS, LIGHT, MARKERS, _pyplot, _svg
from condition.compare.search import MANIFEST_NAME, TrialOutcome, best_by_frontend, read_manifest, with_references
from condition.compare.search_space import command_line, describe, total_epochs
from condition.compare.table import pareto_front
from condition.errors import ConfigError
from condition.run import RunConfig

PLOT = "plots/search-pareto.svg"


@dataclass(frozen=True)
class SearchReport:
    markdown: Path
    html: Path
    plot: Path | None
    text: str  # the summary printed on the terminal


def is_search(out: str | Path) -> bool:
    return (Path(out) / MANIFEST_NAME).is_file()


def write_search_report(out: str | Path) -> SearchReport:
    out = Path(out)
    if not out.is_dir():
        raise ConfigError("DIR", str(out), "no such folder", "give the --out folder of a `condition search` run")
    data = read_manifest(out)
    trials: list[TrialOutcome] = with_references(data["trials"], out, data.get("references", {}))
    s = data["settings"]
    best = best_by_frontend(trials)
    svg = pareto_svg(trials, s["frontends"]) if any(t.status == "ok" for t in trials) else None
    plot = write_text_atomic(out / PLOT, svg) if svg else None
    lines = summary_lines(trials, best, s)
    md = render_md(trials, best, s, lines, plot is not None)
    page = render_html(md, svg)
    return SearchReport(write_text_atomic(out / "search.md", md), write_text_atomic(out / "search.html", page), plot, "\n".join(lines))


def base_config(settings: dict, frontend: str) -> RunConfig:
    """The RunConfig fields a trial's command line needs (chain and OUT do not appear in it)."""
    t = settings["target"]
    target = Target.from_dict(t)  # the JSON form search.py wrote (Target.as_dict: the .ini is under "config_ini")
    return RunConfig(frontend=frontend, chain=(), target=target, model=settings["model"], dataset=settings["dataset"],
                     epochs=settings["epochs"], seed=settings["seed"], train_limit=settings.get("train_limit"),
                     eval_limit=settings.get("eval_limit"))


def summary_lines(trials: list[TrialOutcome], best: dict[str, TrialOutcome], s: dict) -> list[str]:
    counts = {f: [t for t in trials if t.frontend == f] for f in s["frontends"]}
    limits = Limits.from_dict(s.get("limits"))
    lines = [f"search: {s['model']} on {s['dataset']}, {s['target']['accelerator']}, int8 accuracy within "
             f"{s['max_accuracy_drop']:g} points of the dense int8 model trained for the same total epochs"
             + (f"; must fit {limits.describe()}" if limits else "")]
    for f, ts in counts.items():
        ok = sum(t.status == "ok" for t in ts)
        feas = sum(t.feasible for t in ts)
        stopped = sum(t.status == "stopped" for t in ts)
        failed = sum(t.status == "failed" for t in ts)
        misfit = f"{sum(t.status == 'ok' and not t.fits for t in ts)} did not fit, " if limits else ""
        lines.append(f"{f}: {len(ts)} trial{'' if len(ts) == 1 else 's'} ({ok} run, {feas} within the budget, {misfit}{stopped} stopped early, {failed} failed)")
        b = best.get(f)
        if b is None:
            lines.append("  best: none met the constraints" if limits else "  best: none met the accuracy constraint")
            continue
        lines.append(f"  best: {describe(b.params)}")
        lines.append(f"        {b.weights:,} B encoded weights ({b.weights / 1024:.1f} KiB): "
                     f"{_ratios(b.weights, b.reference_weights, b.baseline_weights)}")
        lines.append(f"        {b.cycles:,} total cycles ({_source(b)}): {_ratios(b.cycles, b.reference_cycles, b.baseline_cycles)}")
        lines.append(f"        int8 {b.accuracy:.4f} vs same-epochs baseline {b.baseline_accuracy:.4f} "
                     f"({100 * (b.accuracy - b.baseline_accuracy):+.2f} points)")
        lines.append(f"        {command_line(b.params, base_config(s, f))}")
    for f, ts in counts.items():
        lines += [f"{f}: note: {dip}" for dip in baseline_dips(ts, s["epochs"], s["max_accuracy_drop"])]
    return lines


def baseline_dips(trials: list[TrialOutcome], float_epochs: int, max_drop: float) -> list[str]:
    """Same-epochs baselines more than half the accuracy budget under a shorter-trained one: one training's test
    accuracy moves between epochs, and trials judged against such a dip are judged leniently (they are not re-judged:
    the rule stays the same total epochs; the note says where it was lenient)."""
    by_epochs: dict[int, float] = {}
    for t in trials:
        if t.baseline_accuracy is not None:
            by_epochs[total_epochs(t.params, float_epochs)] = t.baseline_accuracy
    notes = []
    for epochs in sorted(by_epochs):
        shorter = [(e, a) for e, a in by_epochs.items() if e < epochs]
        if not shorter:
            continue
        best_epochs, best = max(shorter, key=lambda ea: (ea[1], -ea[0]))
        dip = 100 * (best - by_epochs[epochs])
        if dip > max_drop / 2:
            judged = [t for t in trials if t.feasible and total_epochs(t.params, float_epochs) == epochs]
            notes.append(f"the {epochs}-epoch baseline ({by_epochs[epochs]:.4f}) is {dip:.2f} points under the "
                         f"{best_epochs}-epoch one ({best:.4f}); {len(judged)} trial{'' if len(judged) == 1 else 's'} "
                         f"within the budget {'was' if len(judged) == 1 else 'were'} judged against it, leniently")
    return notes


def _source(t: TrialOutcome) -> str:
    return "FVP measured" if t.cycles_source == "fvp" else "Vela estimate"


def _ratio(value: int | None, of: int | None) -> str:
    return f"{value / of:.3f}×" if value and of else "–"


def _ratios(value: int | None, reference: int | None, baseline: int | None) -> str:
    return f"{_ratio(value, reference)} dense reference, {_ratio(value, baseline)} same-epochs baseline"


def _acc(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _points(value: float | None, of: float | None) -> str:
    return "–" if value is None or of is None else f"{100 * (value - of):+.2f} points"


def figures_table(b: TrialOutcome) -> list[str]:
    """Markdown rows: the trial's weights, cycles and accuracy beside the dense reference (the
    search's own dense int8 run, what `condition <frontend> post-training-quant` gives) and the
    same-epochs baseline (dense int8 trained as many epochs as the trial), with both ratios."""
    n = lambda v: "–" if v is None else f"{v:,}"  # noqa: E731
    rows = ["| figure | this model | dense reference | × dense reference | same-epochs baseline | × same-epochs baseline |",
            "|---|---|---|---|---|---|",
            f"| encoded weights (Vela), B | {b.weights:,} ({b.weights / 1024:.1f} KiB) | {n(b.reference_weights)} | "
            f"{_ratio(b.weights, b.reference_weights)} | {n(b.baseline_weights)} | {_ratio(b.weights, b.baseline_weights)} |",
            f"| total cycles ({_source(b)}) | {b.cycles:,} | {n(b.reference_cycles)} | {_ratio(b.cycles, b.reference_cycles)} | "
            f"{n(b.baseline_cycles)} | {_ratio(b.cycles, b.baseline_cycles)} |",
            f"| int8 accuracy | {b.accuracy:.4f} | {_acc(b.reference_accuracy)} | {_points(b.accuracy, b.reference_accuracy)} | "
            f"{b.baseline_accuracy:.4f} | {_points(b.accuracy, b.baseline_accuracy)} |"]
    return rows


def pareto_svg(trials: list[TrialOutcome], frontends: list[str]) -> str:
    """Two rows (weights, cycles) × one column per frontend; the front of feasible trials joined."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, len(frontends), figsize=(4.2 * len(frontends), 6.4), squeeze=False, sharey=True)
    for col, f in enumerate(frontends):
        ts = [t for t in trials if t.frontend == f and t.status == "ok"]
        for row, (attr, label) in enumerate((("weights", "encoded weights (KiB, Vela)"), ("cycles", "total cycles (k)"))):
            ax = axes[row][col]
            scale = 1024 if attr == "weights" else 1000
            ok = [t for t in ts if t.feasible]
            bad = [t for t in ts if not t.feasible]
            ax.scatter([getattr(t, attr) / scale for t in bad], [t.accuracy for t in bad], s=18, color=LIGHT[f],
                       marker=MARKERS[f], label="misses accuracy")
            ax.scatter([getattr(t, attr) / scale for t in ok], [t.accuracy for t in ok], s=22, color=COLORS[f],
                       marker=MARKERS[f], label="within budget")
            front = pareto_front([(getattr(t, attr) / scale, t.accuracy, "") for t in ok])
            if len(front) > 1:
                ax.plot([p[0] for p in front], [p[1] for p in front], color=COLORS[f], linewidth=1)
            if ts and all(t.baseline_accuracy is not None for t in ts):
                req = max(t.required_accuracy for t in ts if t.required_accuracy is not None)
                ax.axhline(req, color="#9ca3af", linewidth=0.8, linestyle="--", label="strictest requirement")
            ax.set_xlabel(label + (" — FVP" if attr == "cycles" and any(t.cycles_source == "fvp" for t in ts) else
                                   " — Vela estimate" if attr == "cycles" else ""))
            if col == 0:
                ax.set_ylabel("int8 accuracy")
            if row == 0:
                ax.set_title(f"{f}: {len(ts)} trials run")
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return _svg(fig)


def render_md(trials: list[TrialOutcome], best: dict[str, TrialOutcome], s: dict, lines: list[str], plot: bool) -> str:
    out = ["# condition search", "", *[f"    {line}" for line in lines], ""]
    out += ["Cycles and weights are Vela estimates unless marked FVP. Two dense int8 (post-training-quant) models "
            "are shown beside each result: the **dense reference**, the search's own dense int8 run on the float "
            "model every trial starts from (what `condition <frontend> post-training-quant` gives), and the trial's "
            "**same-epochs baseline**, the dense int8 model trained for the same total epochs (float + every "
            "fine-tuning epoch). The accuracy constraint is against the same-epochs baseline; the best model is "
            "the feasible trial with the smallest sum of its cycle and weight ratios to the dense reference.", ""]
    if plot:
        out += [f"![Pareto fronts]({PLOT})", ""]
    for f in s["frontends"]:
        b = best.get(f)
        out += [f"## {f}", ""]
        if b is not None:
            out += [f"Best: **{describe(b.params)}**", "", *figures_table(b), "", "Reproduce:", "", "```",
                    command_line(b.params, base_config(s, f)), "```", ""]
        out += trials_table([t for t in trials if t.frontend == f], run_column=True)
        out.append("")
    return "\n".join(out)


def trials_table(trials: list[TrialOutcome], run_column: bool = False) -> list[str]:
    """Markdown rows, one per trial; cycles and weights also as ratios to the dense reference."""
    head = "| # | chain | status | int8 acc | required | encoded weights | × dense ref | total cycles | × dense ref |"
    rows = [head + (" run |" if run_column else ""), "|---" * (9 + run_column) + "|"]
    for i, t in enumerate(trials, 1):
        acc = "" if t.accuracy is None else f"{t.accuracy:.4f}"
        req = "" if t.required_accuracy is None else f"{t.required_accuracy:.4f}"
        status = "ok" if t.feasible else ("does not fit" if t.status == "ok" and not t.fits else "misses" if t.status == "ok" else t.status)
        weights, cycles = _ratio(t.weights, t.reference_weights), _ratio(t.cycles, t.reference_cycles)
        row = f"| {i} | {describe(t.params)} | {status} | {acc} | {req} | {_n(t.weights)} | {weights} | {_n(t.cycles)} | {cycles} |"
        rows.append(row + (f" {t.run_dir or t.note} |" if run_column else ""))
    return rows


def _n(v: int | None) -> str:
    return "" if v is None else f"{v:,}"


def render_html(md: str, svg: str | None) -> str:
    """A plain page: the figure inline (offline), the tables as preformatted Markdown."""
    body = ["<h1>condition search</h1>"]
    if svg:
        body.append(f"<figure>{svg}</figure>")
    body.append(f"<pre>{html.escape(md)}</pre>")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>condition search</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}pre{white-space:pre-wrap;font-size:12px}</style>"
            "</head><body>" + "\n".join(body) + "</body></html>\n")
