#!/usr/bin/env bash
# Channel pruning (issue 22): `condition compare --recipe bench/channel.toml` (ds-cnn and mobilenet-v2, Fashion-MNIST
# 28×28×1 and 32×32×3, U55-128 and U85-128, both frontends), then bench/results/channel.md: per cell the int8
# accuracy against the dense int8 model, Vela's NPU cycles as a fraction of the dense model's, the cycle target
# against what was reached, per-layer channel counts on each side and whether they are equal, tf against torch
# cycles. Every figure is computed from the records by this script (cycles are Vela estimates).
#   nice -n 19 bash bench/channel.sh          # re-running resumes by configuration hash
#   REPORT_ONLY=1 bash bench/channel.sh
#   RECIPE=bench/channel_distill.toml OUT=bench/runs/channel_distill RESULTS=bench/results/channel_distill.md bash bench/channel.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/runs/channel}"
RESULTS="${RESULTS:-bench/results/channel.md}"
RECIPE="${RECIPE:-bench/channel.toml}"
mkdir -p "$OUT" bench/results
if [ "${REPORT_ONLY:-0}" != 1 ]; then
  start=$(date +%s); load="$(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/condition compare --recipe "$RECIPE" --out "$OUT" > "$OUT/compare.out" 2> "$OUT/compare.log" || true
  echo "$(( $(date +%s) - start )) s, load before $load, after $(cut -d' ' -f1-3 /proc/loadavg), started $(date -u -d @"$start" +%FT%TZ)" >> "$OUT/times.txt"
fi

.venv/bin/python - "$OUT" "$RECIPE" > "$RESULTS" <<'PY'
import json, subprocess, sys, tomllib
from pathlib import Path

out = Path(sys.argv[1])
recipe = tomllib.loads(Path(sys.argv[2]).read_text())
commit = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
records = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/*/metrics.json"))]
# issue 22's bounds: within 1 point of dense int8; ds-cnn ≤ 0.5×, mobilenet-v2 ≤ 0.6× dense NPU cycles;
# cycle-target mode within 10 % of its target; tf and torch cycles within 5 %, channel counts equal
CYCLE_BOUND = {"ds-cnn": 0.5, "mobilenet-v2": 0.6}


def label(r):
    if r["techniques"] == ["post-training-quant"]:
        return "dense"
    o = r["options"]["channel-prune"]
    return f"cycle target {o['cycle_target']:g}" if o.get("cycle_target") else f"share {o['channel_sparsity']:g}"


def int8(r):
    return next((a["value"] for a in r["accuracy"] if a["kind"] == "int8"), None)


def widths(r):
    return [tuple(l["out_channels"]) for l in r.get("channel_plan", {}).get("layers", [])]


cells = {}
for r in sorted(records, key=lambda r: r["created"]):  # newest wins
    t = r["target"]["accelerator"]
    cells.setdefault((r["model"], r["dataset"], t), {}).setdefault(label(r), {})[r["frontend"]] = r
shown = [r for rows in cells.values() for name, sides in rows.items() if name != "dense" for r in sides.values()]
rates = " / ".join(f"{x:g}" for x in sorted({r["options"]["channel-prune"].get("learning_rate", 1e-3) for r in shown}))
print("# Channel pruning on the NPU (issue 22)\n")
train = f"{recipe['train_limit']:,}" if recipe.get("train_limit") else "all 60,000"
print(f"Produced by `bench/channel.sh` (recipe `{sys.argv[2]}`): {train} training images, {recipe.get('epochs', 1)} float "
      f"epoch(s), int8 accuracy measured on {recipe.get('eval_limit', 10000):,} test images (TFLite interpreter / TOSA int8 "
      "arithmetic), seed 0, fine-tuning " + ("with distillation from the dense float model" if recipe.get("distill") else
      "without distillation") + ". NPU cycles are Vela 5.2.0 estimates; `× dense` divides by the same frontend's dense "
      f"int8 model on the same Target. channel-prune fine-tunes for 3 epochs (its default) at Adam {rates}, constant. "
      "Bounds: within 1 point of "
      "dense int8; ds-cnn ≤ 0.5×, mobilenet-v2 ≤ 0.6× dense NPU cycles; a cycle target reached within 10 %; tf and "
      "torch NPU cycles within 5 % and per-layer channels equal.\n")
print(f"Commit: `{commit}`\n")
times = out / "times.txt"
if times.is_file():
    print("Wall time on the 2-core machine: " + "; ".join(times.read_text().strip().splitlines()) + ".\n")
for (model, dataset, target), rows in sorted(cells.items()):
    print(f"## {model} · {dataset} · {target}\n")
    print("| run | tf int8 | Δ tf | torch int8 | Δ torch | tf NPU cycles | × dense | torch NPU cycles | × dense | tf/torch cycles "
          "| channels equal | checks |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    dense = rows.get("dense", {})
    for name in sorted(rows, key=lambda n: (n != "dense", n)):
        sides = {fw: r for fw, r in rows[name].items() if r.get("status") == "ok"}
        acc = {fw: int8(r) for fw, r in sides.items()}
        cyc = {fw: r["vela"]["npu_cycles"] for fw, r in sides.items() if r.get("vela")}
        delta = {fw: 100 * (acc[fw] - int8(dense[fw])) for fw in acc if fw in dense and acc[fw] is not None}
        frac = {fw: cyc[fw] / dense[fw]["vela"]["npu_cycles"] for fw in cyc if fw in dense and dense[fw].get("vela")}
        ratio = cyc["tf"] / cyc["torch"] - 1 if {"tf", "torch"} <= set(cyc) else None
        same = widths(sides["tf"]) == widths(sides["torch"]) if {"tf", "torch"} <= set(sides) and name != "dense" else None
        checks = []
        if name != "dense" and len(delta) == 2 and len(frac) == 2:
            checks.append("acc " + ("met" if all(d >= -1.0 for d in delta.values()) else "**NOT met**"))
            if name.startswith("cycle target"):
                goal = float(name.split()[-1])
                checks.append("target " + ("met" if all(abs(f / goal - 1) <= 0.10 or f <= goal for f in frac.values()) else "**NOT met**"))
            checks.append(f"≤ {CYCLE_BOUND[model]}× " + ("met" if all(f <= CYCLE_BOUND[model] for f in frac.values()) else "**NOT met**"))
            checks.append("parity " + ("met" if same and abs(ratio) <= 0.05 else "**NOT met**"))
        f = lambda fw: (f"{acc[fw]:.4f}" if fw in acc else rows[name].get(fw, {}).get("status", "–"),
                        f"{delta[fw]:+.1f} pt" if fw in delta else "–", f"{cyc[fw]:,}" if fw in cyc else "–",
                        f"{frac[fw]:.3f}" if fw in frac else "–")
        (ta, td, tc, tfr), (pa, pd, pc, pfr) = f("tf"), f("torch")
        print(f"| {name} | {ta} | {td} | {pa} | {pd} | {tc} | {tfr} | {pc} | {pfr} | "
              f"{'–' if ratio is None else f'{ratio:+.1%}'} | {'–' if same is None else ('yes' if same else '**no**')} | {', '.join(checks) or '–'} |")
    print()
    for name, sides in sorted(rows.items()):
        r = sides.get("tf") or sides.get("torch")
        if name == "dense" or not r or not r.get("channel_plan"):
            continue
        plan = r["channel_plan"]
        layers = ", ".join(f"{l['name']} {l['out_channels'][0]}→{l['out_channels'][1]}" for l in plan["layers"]
                           if l["out_channels"][0] != l["out_channels"][1] and l["kind"] != "depthwise")
        est = f", plan's estimate {plan['estimated_fraction']:.3f}×" if plan.get("estimated_fraction") else ""
        print(f"- {name} ({r['frontend']}): granule {plan['granule']}{est}: {layers}")
    print()
PY
echo "bench: wrote $RESULTS" >&2
