#!/usr/bin/env bash
# Wall times of
#   torch  the seed notebook's torch flow with the raw libraries (bench/raw_torch_flow.py) vs
#          `condition torch post-training-quant` (int8 accuracy on the full test set), each from an
#          empty folder, with each one's per-step seconds
#   compare  the default `condition compare` from an empty folder
#   quick    `condition compare --quick` from an empty folder
#   tests    the README's test command (.venv/bin/python -m pytest -q)
# and the machine's load (`uptime`) before and after each. Writes bench/results/speed.md; the text
# under its "Notes" marker is kept. Run it from a fresh clone after ./setup.sh, on a quiet machine:
#   bench/speed.sh                  # everything (about 15 minutes on 2 cores)
#   PARTS="torch quick" bench/speed.sh
#   REPORT_ONLY=1 bench/speed.sh    # re-render from the last measurements in $OUT
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/condition-bench-speed}"
PARTS="${PARTS:-torch compare quick tests}"
RESULTS=bench/results/speed.md
PY=.venv/bin/python
C=(.venv/bin/condition)
mkdir -p "$OUT"

measure() {  # name, command...: wall seconds, load before/after and output into $OUT/<name>.*
  local name="$1"; shift
  echo "bench: $name" >&2
  rm -rf "${OUT:?}/$name.run"
  uptime > "$OUT/$name.load-before"
  local start end status=0
  start=$(date +%s.%N)
  "$@" > "$OUT/$name.out" 2> "$OUT/$name.err" || status=$?
  end=$(date +%s.%N)
  uptime > "$OUT/$name.load-after"
  echo "$start $end $status" | awk '{printf "%.1f %d\n", $2 - $1, $3}' > "$OUT/$name.wall"
}

if [ "${REPORT_ONLY:-0}" != 1 ]; then
  for part in $PARTS; do
    case "$part" in
      torch)
        measure raw "$PY" bench/raw_torch_flow.py "$OUT/raw.run"
        measure torch-ptq "${C[@]}" torch post-training-quant --out "$OUT/torch-ptq.run" --json ;;
      compare) measure compare "${C[@]}" compare --out "$OUT/compare.run" ;;
      quick) measure quick "${C[@]}" compare --quick --out "$OUT/quick.run" ;;
      tests) measure tests "$PY" -m pytest -q ;;
      *) echo "bench: unknown part $part (torch, compare, quick, tests)" >&2; exit 2 ;;
    esac
  done
fi

"$PY" - "$OUT" "$RESULTS" <<'PY'
import json, os, re, subprocess, sys
from pathlib import Path

out, results = Path(sys.argv[1]), Path(sys.argv[2])
MARKER = "<!-- Notes: text below this line is kept by bench/speed.sh -->"
kept = results.read_text().split(MARKER, 1)[1] if results.is_file() and MARKER in results.read_text() else "\n"


def part(name):
    if not (out / f"{name}.wall").is_file():
        return None
    seconds, status = (out / f"{name}.wall").read_text().split()
    load = lambda when: (out / f"{name}.load-{when}").read_text().split("load average:")[-1].strip()
    return {"seconds": float(seconds), "status": int(status), "before": load("before"), "after": load("after")}


def json_of(name):
    text = (out / f"{name}.out").read_text() if (out / f"{name}.out").is_file() else ""
    start = text.find("{")
    try:
        return json.loads(text[start:] if start >= 0 else "{}")
    except json.JSONDecodeError:  # the raw flow prints Vela's report before its JSON line
        return json.loads(text.strip().splitlines()[-1]) if text.strip() else {}


def mmss(s):
    return f"{int(s // 60)} min {s % 60:04.1f} s" if s >= 60 else f"{s:.1f} s"


commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
lines = ["# Speed", "",
         f"Measured by `bench/speed.sh` at commit {commit} on {os.cpu_count()} CPUs. Load is `uptime`'s 1/5/15-minute",
         "average before and after each measurement: on a busy machine every figure is slower.", ""]
rows = []
labels = {"raw": "raw-library torch seed flow (bench/raw_torch_flow.py)",
          "torch-ptq": "`condition torch post-training-quant` (int8 on 10,000 images)",
          "compare": "`condition compare` (default matrix, empty folder)",
          "quick": "`condition compare --quick` (empty folder)",
          "tests": "`.venv/bin/python -m pytest -q`"}
for name, label in labels.items():
    p = part(name)
    if p:
        status = "ok" if p["status"] == 0 else f"exit {p['status']}"
        rows.append(f"| {label} | {mmss(p['seconds'])} | {status} | {p['before']} | {p['after']} |")
if rows:
    lines += ["| what | wall | status | load before | load after |", "|---|---|---|---|---|", *rows, ""]
raw, ptq = part("raw"), part("torch-ptq")
if raw and ptq:
    lines += [f"`condition torch post-training-quant` / raw flow: **{ptq['seconds'] / raw['seconds']:.2f}×** (target ≤ 1.3×).", ""]
    r, c = json_of("raw"), json_of("torch-ptq")
    rs, cs = r.get("step_seconds", {}), c.get("step_seconds", {})
    lines += ["Per step (seconds; the raw flow's `imports` is its Python start-up to the first step, condition's",
              "start-up is the difference between its wall time and its `total`):", "",
              "| raw flow step | s | condition step | s |", "|---|---|---|---|"]
    for i in range(max(len(rs), len(cs))):
        a = list(rs.items())[i] if i < len(rs) else ("", "")
        b = list(cs.items())[i] if i < len(cs) else ("", "")
        lines.append(f"| {a[0]} | {a[1]} | {b[0]} | {b[1]} |")
    accuracy = {a["kind"]: a["value"] for a in c.get("accuracy", [])}
    lines += ["", f"raw flow: {r.get('threads')} torch threads, fake-quant accuracy {r.get('fake_quant_accuracy', 0):.4f}; "
              f"condition: float {accuracy.get('float', 0):.4f}, fake-quant {accuracy.get('fake_quant', 0):.4f}, "
              f"int8 {accuracy.get('int8', 0):.4f}.", ""]
tests = (out / "tests.out").read_text().strip().splitlines()[-1:] if (out / "tests.out").is_file() else []
if tests:
    lines += [f"Test suite: {tests[0]}", ""]
results.write_text("\n".join(lines) + "\n" + MARKER + kept)
print(f"wrote {results}", file=sys.stderr)
PY
