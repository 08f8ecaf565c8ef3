"""The report's figures (matplotlib, Agg, SVG text with fonts as paths so they render offline).

Every axis title says where its numbers come from: measured, Vela estimate, or FVP measured.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from condition.compare.table import Section, Side, best_row, pareto_front
from condition.techniques import TECHNIQUES

COLORS = {"tf": "#e8710a", "torch": "#3b5bdb"}
LIGHT = {"tf": "#f8c9a0", "torch": "#b9c6f5"}
MARKERS = {"tf": "o", "torch": "s"}


@dataclass(frozen=True)
class Figure:
    name: str  # file stem, e.g. "accuracy-vs-size"
    title: str
    caption: str
    svg: str
    sources: tuple[str, ...] = ()  # "measured", "estimate" (Vela), "fvp"
    wide: bool = False  # spans the full page width in the HTML report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.fonttype": "path", "svg.hashsalt": "condition", "font.size": 9, "axes.titlesize": 10,
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": "#e5e7eb",
        "grid.linewidth": 0.6, "axes.edgecolor": "#9ca3af", "axes.axisbelow": True,
    })
    return plt


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    import matplotlib.pyplot as plt

    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and DOCTYPE


def figures(section: Section, prefix: str = "") -> list[Figure]:
    """All figures for one section; a figure without data is left out rather than drawn empty."""
    out = []
    for make in (accuracy_vs_size, cycles_by_technique, per_layer):
        fig = make(section, prefix)
        if fig is not None:
            out.append(fig)
    return out


def accuracy_vs_size(section: Section, prefix: str = "") -> Figure | None:
    points = {f: [(s.encoded_weight_bytes / 1024, s.accuracy * 100, r.label) for r in section.rows
                  if not r.is_float and (s := r.sides[f]).status == "ok" and s.accuracy is not None and s.encoded_weight_bytes]
              for f in section.frontends}
    if not any(points.values()):
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.2, 4.4))
    for f, pts in points.items():
        if not pts:
            continue
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=46, marker=MARKERS.get(f, "o"), color=COLORS.get(f), label=f, zorder=3)
        front = pareto_front(pts)
        ax.plot([p[0] for p in front], [p[1] for p in front], color=COLORS.get(f), lw=1.4, ls="--", alpha=0.8,
                label=f"{f} Pareto front", zorder=2, drawstyle="steps-post" if len(front) > 1 else "default")
        float_row = next((r for r in section.rows if r.is_float and r.sides[f].accuracy is not None), None)
        if float_row is not None:
            ax.axhline(float_row.sides[f].accuracy * 100, color=COLORS.get(f), lw=0.8, ls=":", alpha=0.9, label=f"{f} float reference")
    _log_kib_axis(ax, [p[0] for pts in points.values() for p in pts])
    _label_points(ax, points)
    ax.set_xlabel("NPU-encoded weights, KiB (Vela estimate, log scale)")
    ax.set_ylabel("int8 accuracy, % (measured)")
    ax.set_title("up and left is better", fontsize=8.5, color="#6b7280")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7.5, frameon=False)
    return Figure(f"{prefix}accuracy-vs-size", "Accuracy vs NPU-encoded weight size",
                  "int8 accuracy measured on the test images; encoded weight bytes are a Vela estimate. Dashed: each "
                  "framework's Pareto front (no other model of that framework is both smaller and more accurate); "
                  f"dotted: its float reference accuracy. Point labels: {_abbreviations()}.", _svg(fig), ("measured", "estimate"))


def _label_points(ax, points: dict[str, list[tuple[float, float, str]]]) -> None:
    """Label every point (tf above, torch below); a label whose box would overlap one already
    placed moves further out. Boxes are measured by the renderer after the limits are final."""
    renderer = ax.figure.canvas.get_renderer()
    placed = []
    for f, pts in points.items():
        step = 1 if f == "tf" else -1
        for x, y, label in sorted(pts):
            dy = 4 if step > 0 else -12
            text = ax.annotate(short_label(label), (x, y), xytext=(5, dy), textcoords="offset points", fontsize=7.5, color=COLORS.get(f))
            for _ in range(8):
                box = text.get_window_extent(renderer)
                if not any(box.overlaps(other) for other in placed):
                    break
                dy += 9 * step
                text.set_position((5, dy))
            placed.append(text.get_window_extent(renderer))


def _log_kib_axis(ax, xs: list[float]) -> None:
    """Log scale with plain tick labels (20, 50, 100 …) instead of 2×10¹."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.set_xscale("log")
    nice = [m * 10 ** e for e in range(-1, 7) for m in (1, 2, 5)]
    lo = max([n for n in nice if n <= min(xs) / 1.1] or [min(xs) / 1.25])  # start on a labelled tick
    hi = max(xs) * 1.3
    ticks = [n for n in nice if lo <= n <= hi]
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def cycles_by_technique(section: Section, prefix: str = "") -> Figure | None:
    rows = [r for r in section.rows if not r.is_float and any(r.sides[f].total_cycles for f in section.frontends)]
    if not rows:
        return None
    plt = _pyplot()
    fws = list(section.frontends)
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    width = 0.8 / len(fws)
    for i, f in enumerate(fws):
        xs = [j + (i - (len(fws) - 1) / 2) * width for j in range(len(rows))]
        total = [(r.sides[f].total_cycles or 0) / 1000 for r in rows]
        npu = [(r.sides[f].npu_cycles or 0) / 1000 for r in rows]
        ax.bar(xs, total, width * 0.92, color=LIGHT.get(f), label=f"{f} total cycles")
        ax.bar(xs, npu, width * 0.92 * 0.55, color=COLORS.get(f), label=f"{f} NPU cycles")
        if section.has_fvp:
            measured = [(x, r.sides[f].fvp_npu_active_cycles / 1000) for x, r in zip(xs, rows) if r.sides[f].fvp_npu_active_cycles]
            if measured:
                ax.scatter(*zip(*measured), marker="D", color="#111827", s=22, zorder=4, label=f"{f} NPU active (FVP measured)")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([r.label.replace(" → ", "\n→ ") for r in rows], fontsize=7.5)
    ax.set_ylabel("kcycles per inference")
    ax.set_title("Vela estimate" + (" (◆ FVP measured)" if section.has_fvp else ""), fontsize=8.5, color="#6b7280")
    ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return Figure(f"{prefix}cycles", "Cycles per technique, grouped by framework",
                  "Wide light bars: total cycles; narrow dark bars: NPU cycles. Vela compiler estimates for this Target"
                  + ("; diamonds are FVP-measured NPU active cycles." if section.has_fvp else "."), _svg(fig),
                  ("estimate", "fvp") if section.has_fvp else ("estimate",))


def per_layer(section: Section, prefix: str = "") -> Figure | None:
    best = {f: r for f in section.frontends if (r := best_row(section, f)) is not None and r.sides[f].record is not None}
    best = {f: r for f, r in best.items() if r.sides[f].record.vela and r.sides[f].record.vela.per_layer}
    if not best:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(len(best), 2, figsize=(11.0, 0.8 + 1.7 * len(best)), squeeze=False)
    for i, (f, row) in enumerate(best.items()):
        side: Side = row.sides[f]
        rec = side.record
        layers = [l for l in rec.vela.per_layer if l.op_cycles > 0] or rec.vela.per_layer
        ax = axes[i][0]
        names = [_short(l.name or l.operator) for l in layers]
        ax.barh(range(len(layers)), [l.op_cycles / 1000 for l in layers], color=COLORS.get(f))
        ax.set_yticks(range(len(layers)), names, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("kcycles (Vela estimate)")
        ax.set_title(f"{f}: {row.label} — cycles per layer", fontsize=9)
        ax = axes[i][1]
        wl = rec.weights.layers if rec.weights else []
        if wl:
            ax.barh(range(len(wl)), [(l.params - l.zeros) / 1000 for l in wl], color=COLORS.get(f), label="non-zero")
            ax.barh(range(len(wl)), [l.zeros / 1000 for l in wl], left=[(l.params - l.zeros) / 1000 for l in wl],
                    color=LIGHT.get(f), label="zero")
            for j, l in enumerate(wl):
                ax.annotate(f"{l.unique_values} unique", (l.params / 1000, j), xytext=(3, 0), textcoords="offset points",
                            va="center", fontsize=6.5, color="#374151")
            ax.set_yticks(range(len(wl)), ["×".join(str(d) for d in l.shape) for l in wl], fontsize=7)
            ax.invert_yaxis()
            ax.set_xlim(0, max(l.params for l in wl) / 1000 * 1.3)
        ax.set_xlabel("thousand weights (measured, exported int8); rows: weight tensor shape")
        ax.set_title(f"{f}: weights per layer (dark non-zero, light zero)", fontsize=9)
    fig.tight_layout()
    labels = "; ".join(f"{f}: {r.label}" for f, r in best.items())
    return Figure(f"{prefix}per-layer", "Per-layer cycles and weights of the best model",
                  f"Best = fewest total cycles (Vela estimate) among the int8 models within 1 accuracy point of the "
                  f"framework's post-training-quant baseline ({labels}). Weights counted on the exported int8 tensors.",
                  _svg(fig), ("estimate", "measured"), wide=True)


def short_label(label: str) -> str:
    """'prune 95 % → cluster 16 → qat' → 'P95→C16→QAT': point labels that fit beside a marker
    (each step's technique name becomes its `abbreviation`)."""
    parts = []
    for p in label.split(" → "):
        for t in TECHNIQUES:
            if p == t.name or p.startswith(t.name + " "):
                p = t.abbreviation + p[len(t.name):].lstrip(" ")
                break
        parts.append(p.replace(" %", ""))
    return "→".join(parts)


def _abbreviations() -> str:
    """'PTQ = post-training-quant, P = prune, C = cluster': the abbreviations that are not just the name in capitals."""
    return ", ".join(f"{t.abbreviation} = {t.name}" for t in TECHNIQUES if t.abbreviation != t.name.upper())


def _short(name: str, limit: int = 28) -> str:
    name = name.split("/")[-2] if name.count("/") >= 2 else name
    return name if len(name) <= limit else "…" + name[-(limit - 1):]
