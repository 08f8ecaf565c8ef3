#!/usr/bin/env bash
# The search's "Must show": `condition search --frontend both --max-accuracy-drop 1` on the seed MLP,
# full Fashion-MNIST, U85-128, within 30 minutes on 2 cores (--time-budget, minus a margin for the
# references and the report). Writes bench/results/search.md (the report's summary, the machine's
# load, the wall time and the checks against ≤ 0.15× dense cycles and ≤ 24 KiB encoded weights and, since
# channel-prune is in the space, issue 22's ≤ 0.05× and ≤ 12 KiB; "dense" is the dense reference, the search's own
# dense int8 run, and the check against each trial's same-epochs baseline is printed beside it).
# Each run starts from an empty $OUT, so the 30 minutes cover the whole search and every figure comes
# from the current code (a run folder's configuration hash does not cover the code version);
# RESUME=1 resumes the search in $OUT instead (finished trials are not redone).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/runs/search}"
if [ "${RESUME:-0}" != 1 ]; then rm -rf "$OUT" "$OUT.log" "$OUT.summary"; fi
BUDGET="${BUDGET:-1680}"   # 28 min of trials; the references, Ray start and the report fit in the rest
TRIALS="${TRIALS:-40}"     # per frontend; the budget usually ends the search first
mkdir -p bench/results "$(dirname "$OUT")"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
.venv/bin/condition search --frontend both --max-accuracy-drop 1 --trials "$TRIALS" --time-budget "$BUDGET" \
  --out "$OUT" 2> "$OUT.log" | tee "$OUT.summary"
SECONDS_TAKEN=$(( $(date +%s) - START ))
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

.venv/bin/python - "$OUT" "$SECONDS_TAKEN" "$LOAD_BEFORE" "$LOAD_AFTER" "$BUDGET" > bench/results/search.md <<'PY'
import sys
from pathlib import Path
from condition.compare.search import read_manifest, best_by_frontend, with_references
from condition.compare.search_report import base_config, baseline_dips, figures_table, trials_table
from condition.compare.search_space import command_line, describe

CYCLES, WEIGHTS = 0.15, 24 * 1024  # the must-show: ≤ 0.15× dense cycles, ≤ 24 KiB encoded weights
out, seconds, load_before, load_after, budget = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
data = read_manifest(out)
trials, s = with_references(data["trials"], out, data["references"]), data["settings"]
best = best_by_frontend(trials)


# issue 22's must-show for the same search (with channel-prune in the space): ≤ 0.05× dense cycles, ≤ 12 KiB
CHANNEL_CYCLES, CHANNEL_WEIGHTS = 0.05, 12 * 1024


def meets(t, of, cycles=CYCLES, weights=WEIGHTS):
    """≤ `cycles` × `of` ("reference" or "baseline") cycles and ≤ `weights` bytes, within the accuracy budget."""
    denominator = t.reference_cycles if of == "reference" else t.baseline_cycles
    return t.feasible and bool(denominator) and t.cycles / denominator <= cycles and t.weights <= weights


print("# condition search — must show\n")
print(f"`bench/search.sh`: `condition search --frontend both --max-accuracy-drop 1 --time-budget {budget}` on the seed MLP, "
      f"{s['dataset']}, {s['target']['accelerator']} ({s['target']['system_config']}, {s['target']['memory_mode']}), "
      f"{s['epochs']} float epoch(s), seed {s['seed']}. Wall time {seconds // 60} min {seconds % 60} s on 2 cores; "
      f"load average (1/5/15 min) {load_before} before, {load_after} after (the machine is shared).\n")
print("Every figure is shown against two dense int8 (post-training-quant) models: the **dense reference**, the search's "
      f"own dense int8 run on its {s['epochs']}-epoch float model (what `condition <frontend> post-training-quant` gives), "
      "and the trial's **same-epochs baseline**, the dense int8 model trained for the trial's total epochs. The accuracy "
      "constraint (within 1 point) is against the same-epochs baseline. The must-show checks — a model at ≤ "
      f"{CYCLES:g}× dense total cycles and ≤ 24 KiB ({WEIGHTS:,} B) encoded weights within the accuracy constraint, "
      f"and at ≤ {CHANNEL_CYCLES:g}× and ≤ 12 KiB ({CHANNEL_WEIGHTS:,} B) with channel pruning (issue 22) — take \"× dense\" as × the dense reference; the same check against the same-epochs baseline's cycles is printed "
      "beside it. Cycles are Vela estimates.\n")
for f in s["frontends"]:
    ts = [t for t in trials if t.frontend == f]
    print(f"## {f}\n")
    print(f"{len(ts)} trials: {sum(t.status == 'ok' for t in ts)} run, {sum(t.feasible for t in ts)} within 1 point, "
          f"{sum(t.status == 'stopped' for t in ts)} stopped early, {sum(t.status == 'failed' for t in ts)} failed.\n")
    for cycles, weights in ((CYCLES, WEIGHTS), (CHANNEL_CYCLES, CHANNEL_WEIGHTS)):
        for of, label in (("reference", "dense reference (the must-show)"), ("baseline", "same-epochs baseline")):
            hits = sorted((t for t in ts if meets(t, of, cycles, weights)), key=lambda t: (t.weights, t.cycles))
            verdict = f"**met** by {len(hits)} trial(s), the smallest {describe(hits[0].params)}" if hits else "**not met**"
            print(f"- ≤ {cycles:g}× {label} cycles and ≤ {weights // 1024} KiB within 1 point: {verdict}")
    print()
    b = best.get(f)
    if b is None:
        print("No trial met the accuracy constraint.\n")
        continue
    print(f"Best (smallest sum of cycle and weight ratios to the dense reference): **{describe(b.params)}**, "
          f"{b.weights - WEIGHTS:+,} B from 24 KiB\n")
    print("\n".join(figures_table(b)) + "\n")
    print("```\n" + command_line(b.params, base_config(s, f)) + "\n```\n")
    print("\n".join(trials_table(ts)) + "\n")
    for dip in baseline_dips(ts, s["epochs"], s["max_accuracy_drop"]):
        print(f"Note: {dip}.\n")
PY
echo "wrote bench/results/search.md" >&2
