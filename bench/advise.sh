#!/usr/bin/env bash
# condition advise must-show: the seed MLP dense and 95 % pruned on U85-128 and U55-128 (both frontends),
# and a compare of the techniques the advice bounds (its report's "Advice vs measured" section).
# Writes under ${OUT:-/tmp/advise-bench}; results are quoted in bench/results/advise.md.
# Part "cnn": the built-in ds-cnn and mobilenet-v2 on U85-128 from the compare runs of bench/cnn_must_show.sh
# (CNN_OUT, default bench/runs/cnn; run that first): `condition advise` on each int8 baseline run folder, and
# the compare's predicted bound vs measured for prune 95 %, prune 90 %, 2:4 and cluster 16. Writes
# bench/results/advise_cnn.md.
#   PARTS=cnn nice -n 19 bash bench/advise.sh     # only the CNN part
set -euo pipefail
cd "$(dirname "$0")/.."
C=".venv/bin/condition"
O="${OUT:-/tmp/advise-bench}"
L="--train-limit 10000 --eval-limit 1000"
PARTS="${PARTS:-mlp cnn}"
t() { echo "### $*"; /usr/bin/time -f "### wall %e s" "$@"; }
if [[ " $PARTS " == *" mlp "* ]]; then
  t $C advise --frontend tf --target ethos-u85-128 $L --out "$O/runs"
  t $C advise "$(ls "$O"/runs/tf/mlp/post-training-quant-*/model_int8.tflite | head -1)" --target ethos-u55-128 --out "$O/runs"
  t $C tf prune --sparsity 0.95 $L --out "$O/runs"
  P="$(ls -d "$O"/runs/tf/mlp/prune-* | head -1)"
  t $C advise "$P" --target ethos-u85-128 --out "$O/runs"
  t $C advise "$P/model_int8.tflite" --target ethos-u55-128 --out "$O/runs"
  t $C advise --frontend torch --target ethos-u55-128 $L --out "$O/runs"
  t $C torch prune --sparsity 0.95 --target ethos-u55-128 $L --out "$O/runs"
  t $C advise "$(ls -d "$O"/runs/torch/mlp/prune-* | head -1)/model.pte" --target ethos-u55-128 --out "$O/runs"
  t $C compare --recipe bench/advise.toml --out "$O/compare"
fi

if [[ " $PARTS " == *" cnn "* ]]; then
  CNN_OUT="${CNN_OUT:-bench/runs/cnn}"
  .venv/bin/python - "$CNN_OUT" "$O/cnn" "${CNN_MODELS:-ds-cnn mobilenet-v2}" > bench/results/advise_cnn.md <<'PY'
import subprocess, sys, time
from pathlib import Path
from condition.backend.advise import Advice
from condition.compare.advice import advice_file, advice_tables, write_comparison_advice
from condition.compare.records import load_comparison
from condition.compare.table import build_sections

cnn_out, adv_out, models = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split()
commit = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
n = lambda v: "–" if v is None else f"{v:,}"
load = lambda: open("/proc/loadavg").read().split()[:3]
print("# `condition advise` on the built-in CNNs (U85-128), and predicted bound vs measured\n")
print(f"Produced by `PARTS=cnn bench/advise.sh` at `{commit}` from the compare runs of `bench/cnn_must_show.sh` "
      f"(`{cnn_out}/u85-<model>`, recipe `bench/cnn_must_show.toml`: see bench/results/cnn_must_show.md for their "
      "training subset, epochs and accuracy). Every cycle and weight figure is a Vela estimate; the advice reads "
      "the dense int8 baseline only (accuracy does not enter it).\n")
details = []
for model in models:
    out = cnn_out / f"u85-{model}"
    if not (out / "compare.json").is_file():
        print(f"## {model}: no compare run in {out}\n")
        continue
    comp = load_comparison(out)
    for problem in write_comparison_advice(comp):  # what the compare does at its end, for its finished baselines
        print(f"<!-- {problem} -->")
    for sec in build_sections(comp):
        base = next((r for r in sec.rows if r.is_baseline), None)
        print(f"## {sec.model} · {sec.dataset} · {sec.target.label()}\n")
        print("| frontend | `condition advise` verdict | dense total cycles | NPU compute | layers weight / memory / MAC-bound "
              "| best techniques (bound) | same as the compare's advice | wall |")
        print("|---|---|---:|---:|---|---|---|---|")
        for fw in sec.frontends:
            side = base.sides[fw] if base else None
            if side is None or side.status != "ok":
                print(f"| {fw} | baseline {side.status if side else 'missing'} | | | | | | |")
                continue
            cmd = [".venv/bin/condition", "advise", side.run_dir, "--target", side.record.target.accelerator, "--out", str(adv_out)]
            l0, t0 = load(), time.time()
            p = subprocess.run(cmd, capture_output=True, text=True)
            wall, l1 = time.time() - t0, load()
            if p.returncode != 0:
                print(f"| {fw} | FAILED: {p.stderr.strip()[-200:]} | | | | | | |")
                continue
            path = next(l.split(":", 1)[1].strip() for l in p.stdout.splitlines() if l.startswith("advice:"))
            a = Advice.read(path)
            counts = " / ".join(str(sum(l.bound == b for l in a.layers)) for b in ("weight", "memory", "mac"))
            best = "; ".join(f"{t.label} ≥ {n(t.total_cycles)} (×{t.cycles_vs_dense:.2f})" for t in a.techniques if t.applicable)
            cf = advice_file(out, fw, side.record.config_hash)
            same = "–"
            if cf.is_file():
                c = Advice.read(cf)
                same = "yes" if ([(t.label, t.total_cycles) for t in c.techniques] == [(t.label, t.total_cycles) for t in a.techniques]
                                 and c.dense == a.dense) else "**no**"
            print(f"| {fw} | {a.verdict.split('.')[0]} | {n(a.dense['total_cycles'])} | {n(a.dense['npu_cycles'])} "
                  f"({a.dense['npu_cycles'] / a.dense['total_cycles']:.0%}) | {counts} | {best} | {same} | {wall:.1f} s |")
            details.append((f"{sec.model} · {sec.dataset} · {fw}", " ".join(cmd), l0, l1, p.stdout))
        print()
        tables = advice_tables(comp, sec)
        if not tables:
            print("No advice in the compare run (its baseline cells failed or the advice step did not run).\n")
            continue
        print("Predicted bound (the compare's advice on its int8 baseline cell) vs measured (that technique's cell):\n")
        print("| frontend | technique | predicted cycles ≥ | measured | measured / predicted | predicted weights ≥ "
              "| measured weights | verdict |")
        print("|---|---|---:|---:|---:|---:|---:|---|")
        for t in tables:
            dense = t.advice.dense
            for r in t.rows:
                rc = "–" if r.cycles_ratio is None else f"{r.cycles_ratio:.2f}"
                x = lambda v, k: "–" if v is None else f"{v:,} (×{v / dense[k]:.2f})"
                print(f"| {t.frontend} | {r.label} | {x(r.predicted_cycles, 'total_cycles')} | {x(r.achieved_cycles, 'total_cycles')} "
                      f"| {rc} | {x(r.predicted_weights, 'encoded_weight_bytes')} | {x(r.achieved_weights, 'encoded_weight_bytes')} "
                      f"| {r.verdict} |")
        for t in tables:
            same = "the same" if list(t.predicted_order) == list(t.achieved_order) else "**not** the same"
            print(f"\n{t.frontend}: predicted order {' < '.join(t.predicted_order)}; measured {' < '.join(t.achieved_order)} ({same}).")
        print()
print("## `condition advise` output\n")
for title, cmd, l0, l1, text in details:
    print(f"<details><summary>{title}: <code>{cmd}</code> (load {' '.join(l0)} → {' '.join(l1)})</summary>\n\n"
          f"```\n{text.rstrip()}\n```\n</details>\n")
PY
  echo "wrote bench/results/advise_cnn.md" >&2
fi
