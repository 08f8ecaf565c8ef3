#!/usr/bin/env bash
# Recovery after fine-tuning with default options (issue 20): `condition compare --recipe bench/recovery.toml`
# (ds-cnn and mobilenet-v2, Fashion-MNIST 28×28×1 and 32×32×3, U85-128, both frontends, 12,000 training images,
# 2 float epochs), then bench/results/recovery.md: int8 accuracy of each technique against the dense int8 model,
# met / NOT met for the issue's bounds, tf against torch, and the old default (prune with 1 fine-tuning epoch).
# Every figure is computed from the records by this script.
#   nice -n 19 bash bench/recovery.sh          # re-running resumes by configuration hash
#   REPORT_ONLY=1 bash bench/recovery.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/runs/recovery}"
RESULTS=bench/results/recovery.md
mkdir -p "$OUT" bench/results
if [ "${REPORT_ONLY:-0}" != 1 ]; then
  start=$(date +%s); load="$(cut -d' ' -f1-3 /proc/loadavg)"
  .venv/bin/condition compare --recipe bench/recovery.toml --out "$OUT" > "$OUT/compare.out" 2> "$OUT/compare.log" || true
  echo "$(( $(date +%s) - start )) s, load before $load, after $(cut -d' ' -f1-3 /proc/loadavg), started $(date -u -d @"$start" +%FT%TZ)" >> "$OUT/times.txt"
fi

.venv/bin/python - "$OUT" > "$RESULTS" <<'PY'
import json, subprocess, sys
from pathlib import Path

out = Path(sys.argv[1])
commit = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
records = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/*/metrics.json"))]
BOUNDS = {"prune 0.9": 1.5, "prune 0.95": 3.0, "prune 0.95 → cluster 16 → qat": 3.0, "cluster 16": 1.0}


def label(r):
    t, o = r["techniques"], r["options"]
    if t == ["post-training-quant"]:
        return "dense"
    if t == ["prune"]:
        p = o["prune"]
        return f"prune {p['sparsity']:g}" + (" (1 epoch: before)" if p.get("fine_tune_epochs") == 1 else "")
    if t == ["cluster"]:
        return f"cluster {o['cluster']['clusters']}"
    return " → ".join(f"prune {o['prune']['sparsity']:g}" if s == "prune" else f"cluster {o['cluster']['clusters']}"
                      if s == "cluster" else s for s in t)


def int8(r):
    return next((a["value"] for a in r["accuracy"] if a["kind"] == "int8"), None)


cells = {}
for r in sorted(records, key=lambda r: r["created"]):  # a re-run under a new fine-tuning recipe leaves the old folders: newest wins
    cells.setdefault((r["model"], r["dataset"]), {}).setdefault(label(r), {})[r["frontend"]] = r
print("# Recovery after fine-tuning, default options (issue 20)\n")
print("Produced by `bench/recovery.sh` (recipe `bench/recovery.toml`): U85-128, 12,000 training images, 2 float epochs, "
      "int8 accuracy measured on 5,000 test images (TFLite interpreter / TOSA int8 arithmetic), seed 0. Default options: "
      "Adam at 1e-3 constant, cross-entropy, no distillation; prune chooses its fine-tuning epochs (28 / (1 − sparsity) steps from "
      "sparsity 0.8: 3 epochs at 0.9, 6 at 0.95 here), and each pruned layer keeps at least 2 weights per output channel "
      "(mobilenet-v2's 16-input expand and head convs stop at 87.5 %); cluster and qat 1 epoch. `prune 0.9 (1 epoch: before)` is "
      "the old fine-tuning (1 epoch). "
      "Bounds: prune 0.9 within 1.5 points of dense int8, prune 0.95 and prune → cluster → qat within 3, cluster 16 "
      "within 1; tf and torch within 2 points of each other.\n")
print(f"Commit: `{commit}`\n")
times = out / "times.txt"
if times.is_file():
    print("Wall time on the 2-core machine: " + "; ".join(times.read_text().strip().splitlines()) + ".\n")
met = total = 0
for (model, dataset), rows in sorted(cells.items()):
    print(f"## {model} · {dataset}\n")
    print("| run | tf int8 | Δ tf | torch int8 | Δ torch | bound | tf − torch | met |\n|---|---|---|---|---|---|---|---|")
    dense = {fw: int8(r) for fw, r in rows.get("dense", {}).items()}
    order = ["dense", "prune 0.9", "prune 0.9 (1 epoch: before)", "prune 0.95", "cluster 16", "prune 0.95 → cluster 16 → qat"]
    for name in sorted(rows, key=lambda n: order.index(n) if n in order else 99):
        sides = rows[name]
        acc = {fw: int8(r) for fw, r in sides.items() if r.get("status") == "ok"}
        delta = {fw: 100 * (acc[fw] - dense[fw]) for fw in acc if dense.get(fw) is not None}
        bound = BOUNDS.get(name)
        gap = 100 * (acc["tf"] - acc["torch"]) if {"tf", "torch"} <= set(acc) else None
        ok = None
        if bound is not None and len(delta) == 2 and gap is not None:
            ok = all(d >= -bound for d in delta.values()) and abs(gap) <= 2.0
            met += ok
            total += 1
        f = lambda fw: (f"{acc[fw]:.4f}", f"{delta[fw]:+.1f} pt" if fw in delta else "–") if fw in acc else (sides.get(fw, {}).get("status", "–"), "–")
        (ta, td), (pa, pd) = f("tf"), f("torch")
        print(f"| {name} | {ta} | {td} | {pa} | {pd} | {'–' if bound is None else f'≥ −{bound:g} pt'} "
              f"| {'–' if gap is None else f'{gap:+.1f} pt'} | {'–' if ok is None else ('met' if ok else '**NOT met**')} |")
    print()
print(f"{met} of {total} bounded cells met.\n")
PY
echo "bench: wrote $RESULTS" >&2
