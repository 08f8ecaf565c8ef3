#!/usr/bin/env bash
# The search's "Must show": `condition search --frontend both --max-accuracy-drop 1` on the seed MLP,
# full Fashion-MNIST, U85-128, within 30 minutes on 2 cores (--time-budget, minus a margin for the
# references and the report). Writes bench/results/search.md (the report's summary, the machine's
# load, the wall time and the check against ≤ 0.15× dense cycles and ≤ 24 KiB encoded weights).
# Re-running resumes the search in $OUT (finished trials are not redone).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/runs/search}"
BUDGET="${BUDGET:-1680}"   # 28 min of trials; the references, Ray start and the report fit in the rest
TRIALS="${TRIALS:-40}"     # per frontend; the budget usually ends the search first
mkdir -p bench/results
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
.venv/bin/condition search --frontend both --max-accuracy-drop 1 --trials "$TRIALS" --time-budget "$BUDGET" \
  --out "$OUT" 2> "$OUT.log" | tee "$OUT.summary"
SECONDS_TAKEN=$(( $(date +%s) - START ))
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

.venv/bin/python - "$OUT" "$SECONDS_TAKEN" "$LOAD_BEFORE" "$LOAD_AFTER" "$BUDGET" > bench/results/search.md <<'PY'
import json, sys
from pathlib import Path
from condition.compare.search import read_manifest, best_by_frontend
from condition.compare.search_report import base_config
from condition.compare.search_space import command_line, describe

out, seconds, load_before, load_after, budget = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
data = read_manifest(out)
trials, s = data["trials"], data["settings"]
best = best_by_frontend(trials)
print("# condition search — must show\n")
print(f"`bench/search.sh`: `condition search --frontend both --max-accuracy-drop 1 --time-budget {budget}` on the seed MLP, "
      f"{s['dataset']}, {s['target']['accelerator']} ({s['target']['system_config']}, {s['target']['memory_mode']}), "
      f"{s['epochs']} float epoch(s), seed {s['seed']}. Wall time {seconds // 60} min {seconds % 60} s on 2 cores; "
      f"load average (1/5/15 min) {load_before} before, {load_after} after (the machine is shared).\n")
for f in s["frontends"]:
    ts = [t for t in trials if t.frontend == f]
    print(f"## {f}\n")
    print(f"{len(ts)} trials: {sum(t.status == 'ok' for t in ts)} run, {sum(t.feasible for t in ts)} within 1 point, "
          f"{sum(t.status == 'stopped' for t in ts)} stopped early, {sum(t.status == 'failed' for t in ts)} failed.\n")
    b = best.get(f)
    if b is None:
        print("No trial met the accuracy constraint.\n")
        continue
    ratio = b.cycles / b.baseline_cycles
    kib = b.weights / 1024
    ok = ratio <= 0.15 and kib <= 24
    print(f"Best: **{describe(b.params)}**\n")
    print("| figure | best | its baseline | ratio |\n|---|---|---|---|")
    print(f"| encoded weights (Vela) | {b.weights:,} B ({kib:.1f} KiB) | {b.baseline_weights:,} B | {b.weights / b.baseline_weights:.3f}× |")
    print(f"| total cycles (Vela estimate) | {b.cycles:,} | {b.baseline_cycles:,} | {ratio:.3f}× |")
    print(f"| int8 accuracy | {b.accuracy:.4f} | {b.baseline_accuracy:.4f} | {100 * (b.accuracy - b.baseline_accuracy):+.2f} points |")
    print(f"\nCheck ≤ 0.15× cycles and ≤ 24 KiB: **{'met' if ok else 'not met'}**; {kib - 20:+.1f} KiB from 20 KiB.\n")
    print("```\n" + command_line(b.params, base_config(s, f)) + "\n```\n")
    print("| # | chain | status | int8 | needs | weights B | cycles |\n|---|---|---|---|---|---|---|")
    for i, t in enumerate(ts, 1):
        acc = "" if t.accuracy is None else f"{t.accuracy:.4f}"
        req = "" if t.required_accuracy is None else f"{t.required_accuracy:.4f}"
        status = "ok" if t.feasible else ("misses" if t.status == "ok" else t.status)
        n = lambda v: "" if v is None else f"{v:,}"
        print(f"| {i} | {describe(t.params)} | {status} | {acc} | {req} | {n(t.weights)} | {n(t.cycles)} |")
    print()
PY
echo "wrote bench/results/search.md" >&2
