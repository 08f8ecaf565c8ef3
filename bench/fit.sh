#!/usr/bin/env bash
# "Will it fit?" must-show (issue 21). Writes bench/results/fit.md; runs under ${OUT:-/tmp/fit-bench}.
# 1. Footprints: ds-cnn, mobilenet-v2 and mlp, dense int8 (post-training-quant), U55-128 and U85-128, both
#    frontends: the record's SRAM / flash used next to the "Total … used" lines of Vela's own summary (its log),
#    and each .pte's memory plan and Ethos-U scratch read back from the file.
# 2. `condition search --max-accuracy-drop 1 --sram-limit <half the dense model's SRAM>` on ds-cnn (tf, U85-128):
#    every feasible trial fits, and the report counts the trials that did not.
# 3. `condition advise --sram-limit 64KiB` on the seed MLP for U85-128: the memory modes that fit.
# Small data (TRAIN_LIMIT, default 2000 training images, 500 test images, 1 epoch): the accuracies are not the
# point; the footprints do not depend on training.
#   PARTS="footprint search advise" nice -n 19 bash bench/fit.sh
#   PARTS="" bash bench/fit.sh        # only rewrite bench/results/fit.md from what is in $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
C=".venv/bin/condition"
O="${OUT:-/tmp/fit-bench}"
L="--train-limit ${TRAIN_LIMIT:-2000} --eval-limit ${EVAL_LIMIT:-500}"
PARTS="${PARTS-footprint search advise}"
TRIALS="${TRIALS:-6}"
mkdir -p bench/results "$O"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
START=$(date +%s)
if [[ " $PARTS " == *" footprint "* ]]; then
  for model in ds-cnn mobilenet-v2 mlp; do
    for npu in ethos-u55-128 ethos-u85-128; do
      for fw in tf torch; do
        $C "$fw" post-training-quant --model "$model" --target "$npu" $L --out "$O/runs" > /dev/null 2>> "$O/footprint.log" || true
      done
    done
  done
fi
if [[ " $PARTS " == *" search "* ]]; then
  HALF="$(.venv/bin/python - "$O/runs" <<'PY'
import sys
from pathlib import Path
from condition.backend.metrics import MetricsRecord
records = [MetricsRecord.read(p) for p in Path(sys.argv[1]).glob("tf/ds-cnn/post-training-quant-*/metrics.json")]
print(next(r.vela.sram_used_bytes for r in records if r.target.npu == "ethos-u85-128") // 2)
PY
)"
  rm -rf "$O/search"
  echo "$HALF" > "$O/search.limit"
  $C search --frontend tf --model ds-cnn --target ethos-u85-128 --max-accuracy-drop 1 --sram-limit "$HALF" --trials "$TRIALS" \
    $L --out "$O/search" > "$O/search.summary" 2> "$O/search.log" || true
fi
if [[ " $PARTS " == *" advise "* ]]; then
  $C advise --target ethos-u85-128 --sram-limit 64KiB $L --out "$O/runs" > "$O/advise.txt" 2>> "$O/advise.log" || true
fi
SECONDS_TAKEN=$(( $(date +%s) - START ))
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

.venv/bin/python - "$O" "$SECONDS_TAKEN" "$LOAD_BEFORE" "$LOAD_AFTER" "$PARTS" > bench/results/fit.md <<'PY'
import re, subprocess, sys
from pathlib import Path
from condition.backend.metrics import MetricsRecord

out, seconds, load_before, load_after, parts = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
half = (out / "search.limit").read_text().strip() if (out / "search.limit").is_file() else "?"
commit = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
print("# Will it fit? Footprints, budgets and memory modes (bench/fit.sh)\n")
print(f"At `{commit}`; parts run now: `{parts or 'none (report rewritten from earlier runs)'}`, {seconds} s wall, load "
      f"average {load_before} before and {load_after} after (2 cores shared with other jobs). Dense int8 (post-training-quant), Fashion-MNIST 28×28, small training subsets: only the memory "
      "figures matter here, and they do not depend on the training.\n")


def vela_log_kib(run: Path) -> dict[str, float]:
    """Vela's own summary lines ("Total SRAM used   16.73 KiB") from its console log."""
    logs = list(run.glob("vela/*_vela.log")) + list(run.glob("delegate/vela.log"))
    text = logs[0].read_text(errors="replace") if logs else ""
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"Total (SRAM|DRAM|On-chip Flash|Off-chip Flash) used\s+([\d.]+) KiB", text)}


if any((out / "runs").glob("*/*/post-training-quant-*/metrics.json")):
    print("## 1. Footprints in the record vs Vela's summary, and the .pte read back\n")
    print("SRAM / flash used: the record (bytes, from Vela's summary CSV) and Vela's console summary (KiB, 2 decimals). "
          "Arena / scratch and pool: read from the deployed file — tf: the Vela .tflite's `scratch` tensor and TFLite Micro's "
          "tensor arena (every non-constant tensor, 16 B aligned); torch: the delegate's `scratch_size` block and the "
          "method's memory plan (non-constant buffers), the sizes for arm_executor_runner's scratch and method allocator pools.\n")
    print("| model | NPU | frontend | SRAM used (record) | Vela log SRAM | flash used on+off (record) | Vela log flash | DRAM used | "
          "weights / arena in | deployed file | arena / scratch (file) | pool ≥ (file) | equal |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---|")
    for rec_path in sorted((out / "runs").glob("*/*/post-training-quant-*/metrics.json")):
        r = MetricsRecord.read(rec_path)
        v, m = r.vela, r.memory
        if v is None or v.sram_used_bytes is None:
            continue
        log = vela_log_kib(rec_path.parent)
        flash = (v.on_chip_flash_used_bytes or 0) + (v.off_chip_flash_used_bytes or 0)
        log_flash = log.get("On-chip Flash", 0.0) + log.get("Off-chip Flash", 0.0)
        same = round(v.sram_used_bytes / 1024, 2) == log.get("SRAM", 0.0) and abs(flash / 1024 - log_flash) < 0.011
        deployed = r.artifact("vela_tflite") or r.artifact("pte")
        print(f"| {r.model} | {r.target.npu} | {r.frontend} | {v.sram_used_bytes:,} B | {log.get('SRAM', 0):.2f} KiB | {flash:,} B | "
              f"{log_flash:.2f} KiB | {v.dram_used_bytes or 0:,} B | {v.weights_storage_area} / {v.feature_map_storage_area} | "
              f"{deployed.bytes:,} B | {(m.scratch_bytes + m.fast_scratch_bytes) if m else 0:,} B | {m.planned_bytes if m else 0:,} B | "
              f"{'yes' if same else 'NO'} |")
    print()

if (out / "search.summary").is_file():
    print(f"## 2. `condition search --max-accuracy-drop 1 --sram-limit {half}` (half the dense ds-cnn's SRAM), tf, U85-128\n")
    summary = (out / "search.summary").read_text() if (out / "search.summary").is_file() else "(no summary)"
    print("```\n" + summary.split("\nreport:")[0].strip() + "\n```\n")
    from condition.compare.search import read_manifest
    try:
        trials = read_manifest(out / "search")["trials"]
        feasible = [t for t in trials if t.feasible]
        within = all(t.sram_bytes is not None and t.sram_bytes <= int(half) for t in feasible)
        print(f"Trials: {len(trials)}; feasible {len(feasible)}"
              + (f", every one within the limit: {within}" if feasible else " (none over the limit among them, trivially)")
              + "; did not fit: "
              f"{sum(t.status == 'ok' and not t.fits for t in trials)}. SRAM of each run trial: "
              + ", ".join(f"{t.sram_bytes:,} B" for t in trials if t.sram_bytes is not None) + "\n")
    except FileNotFoundError:
        print("(no search manifest)\n")

if (out / "advise.txt").is_file():
    print("## 3. `condition advise --sram-limit 64KiB` on the seed MLP (tf), U85-128\n")
    text = (out / "advise.txt").read_text() if (out / "advise.txt").is_file() else ""
    print("```\n" + (text[text.index("Memory modes"):].strip() if "Memory modes" in text else "(no output)") + "\n```")
PY
echo "bench/results/fit.md written ($SECONDS_TAKEN s)"
