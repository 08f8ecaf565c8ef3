"""The short table `condition compare` and `condition report` print on the terminal; the full
tables are in report.md / report.html."""
from __future__ import annotations

from condition.compare.layout import kib, num, pct, times
from condition.compare.table import Section, Side


def _acc(s: Side) -> str:
    if s.status != "ok":
        return s.status if s.status != "absent" else "–"
    return pct(s.accuracy) + ("f" if s.accuracy_kind == "float" else "")


def render_text(sections: list[Section]) -> str:
    out = []
    for section in sections:
        fws = list(section.frontends)
        both = {"tf", "torch"} <= set(fws)
        head = ["technique"] + [f"acc {f}" for f in fws] + [f"enc.weights {f}" for f in fws] + [f"total cyc {f}" for f in fws]
        head += ["cyc tf/torch"] if both else []
        lines = [head]
        for row in section.rows:
            s = row.sides
            line = [row.label] + [_acc(s[f]) for f in fws]
            line += [kib(s[f].encoded_weight_bytes) if s[f].status == "ok" else "–" for f in fws]
            line += [num(s[f].total_cycles) if s[f].status == "ok" else "–" for f in fws]
            line += [times(row.tf_over_torch.get("total_cycles"))] if both else []
            lines.append(line)
        widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
        text = [section.title + "   (accuracy measured, f = float; weights and cycles: Vela estimate)"]
        for j, r in enumerate(lines):
            text.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
            if j == 0:
                text.append("  ".join("-" * w for w in widths))
        out.append("\n".join(text))
    return "\n\n".join(out)
