#!/usr/bin/env bash
# Issue 4 "Must show" for the PyTorch frontend: seed MLP, full Fashion-MNIST (60k train / 10k test),
# 1 epoch, seed 0, Vela 5.1.0 estimates; int8 accuracy on the TOSA reference model.
# Writes bench/results/torch_must_show.md. Runs go to $OUT (default /tmp/condition-bench-torch),
# which also holds the float cache, so the float MLP is trained once.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/condition-bench-torch}"
C=(.venv/bin/condition)
RESULTS=bench/results/torch_must_show.md
LIST="$OUT/records.txt"
mkdir -p "$OUT"
[ "${REPORT_ONLY:-0}" = 1 ] || : > "$LIST"

run() {  # label, then condition torch arguments; a finished record in $OUT is reused (RERUN=1 redoes it)
  local label="$1"; shift
  local name; name="$OUT/$(printf '%s' "$label" | tr -c 'A-Za-z0-9' '_')"
  if [ "${RERUN:-0}" = 1 ] || [ ! -s "$name.json" ] || [ ! -s "$name.seconds" ]; then
    echo "bench: $label" >&2
    local start=$SECONDS
    "${C[@]}" torch "$@" --out "$OUT" --json > "$OUT/last.json"
    cp "$OUT/last.json" "$name.json"
    echo "$((SECONDS - start))" > "$name.seconds"
  fi
  echo "$label|$(cat "$name.seconds")|$*" >> "$LIST"
}

if [ "${REPORT_ONLY:-0}" != 1 ]; then  # REPORT_ONLY=1 re-renders the table from $OUT's records

for target in ethos-u85-128 ethos-u55-128; do
  run "$target dense int8 (PTQ)"            post-training-quant --target "$target"
  run "$target 95 % pruned (L1 unstructured)" prune --sparsity 0.95 --target "$target"
done
run "ethos-u85-128 16 clusters"              cluster --clusters 16
run "ethos-u85-128 2:4"                      prune --structure 2:4 --sparsity 0.5
# The seed notebook's SEED = 123: the same dense run with the notebook's seed, for the seed-to-seed spread.
run "ethos-u85-128 dense int8 (PTQ), seed 123" post-training-quant --seed 123
fi

.venv/bin/python - "$OUT" "$LIST" "$RESULTS" <<'PY'
import json, sys
from pathlib import Path

out, listing, results = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rows = []
for line in listing.read_text().splitlines():
    label, seconds, args = line.split("|", 2)
    r = json.loads((out / (''.join(c if c.isalnum() else '_' for c in label) + ".json")).read_text())
    acc = {a["kind"]: a for a in r["accuracy"]}
    v = r["vela"] or {}
    pte = next(a["bytes"] for a in r["artifacts"] if a["kind"] == "pte")
    rows.append((label, acc.get("float", {}).get("value"), acc.get("fake_quant", {}).get("value"), acc.get("int8", {}).get("value"),
                 r["weights"]["sparsity"], r["weights"]["max_unique_values"], v.get("encoded_weight_bytes"), v.get("npu_cycles"),
                 v.get("total_cycles"), pte, f'{v.get("ops_on_npu")}/{v.get("ops_on_cpu")}', seconds, args))

def f(x, fmt):
    return "–" if x is None else format(x, fmt)

lines = [
    "# PyTorch frontend — issue 4 \"Must show\"",
    "",
    "Seed MLP (784-512-256-10), full Fashion-MNIST (60,000 train / 10,000 test), 1 epoch + 1 fine-tune epoch, seed 0.",
    "System config per family default (U85: Ethos_U85_SYS_DRAM_Mid, U55: Ethos_U55_High_End_Embedded), Shared_Sram.",
    "Encoded weights and cycles: **Vela 5.1.0 estimates** from the ExecuTorch Ethos-U backend's own Vela run.",
    "int8 accuracy: the .pte's delegated TOSA graph on the TOSA reference model (bit-exact NPU arithmetic), 10,000 images;",
    "fake-quant: the PT2E-converted graph in torch. Produced by `bench/torch_must_show.sh` on 2 shared cores",
    "(wall seconds include contention with other jobs).",
    "",
    "| run | float | fake-quant | int8 (TOSA ref) | sparsity (int8) | max unique/channel | encoded weights B | NPU cycles | total cycles | .pte B | ops NPU/CPU | wall s | command |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
]
for (label, fl, fq, i8, sp, uq, enc, npu, tot, pte, ops, sec, args) in rows:
    lines.append(f"| {label} | {f(fl, '.4f')} | {f(fq, '.4f')} | {f(i8, '.4f')} | {sp:.3f} | {uq} | {f(enc, ',')} | {f(npu, ',')} | {f(tot, ',')} | {pte:,} | {ops} | {sec} | `condition torch {args}` |")
results.write_text("\n".join(lines) + "\n")
print(results.read_text())
PY
