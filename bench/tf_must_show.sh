#!/usr/bin/env bash
# The TensorFlow frontend's "Must show", measured on full Fashion-MNIST with the seed MLP:
# dense, prune 0.95, cluster 16, 2:4, 2:4 + 95 % inside the pattern, prune → cluster, on U85-128,
# U55-128 and U65-256. Writes bench/results/tf_must_show.md (+ the JSON records beside it).
# The float model is trained once (OUT/tf/.float-cache) and shared by every run.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/runs}"
EPOCHS="${EPOCHS:-1}"
RES=bench/results/tf_must_show
mkdir -p "$RES"
C=(.venv/bin/condition)

run() {  # name, target, then the condition tf arguments; a result already written is kept (re-runs resume)
  local name="$1" target="$2"; shift 2
  [ -s "$RES/${target}_${name}.json" ] && return 0
  echo "== $name on $target: condition tf $*" >&2
  "${C[@]}" tf "$@" --target "$target" --epochs "$EPOCHS" --out "$OUT" --json > "$RES/${target}_${name}.json"
}

for target in ethos-u85-128 ethos-u55-128 ethos-u65-256; do
  run dense          "$target" post-training-quant
  run prune95        "$target" prune --sparsity 0.95
  run cluster16      "$target" cluster --clusters 16
  run prune95_cluster16 "$target" prune --sparsity 0.95 --then cluster --clusters 16
  if [ "$target" = ethos-u85-128 ] || [ -n "${ALL_2OF4:-}" ]; then  # 2:4 skipping is a U85 MAC-array feature
    run prune2of4    "$target" prune --structure 2:4 --sparsity 0.5
    run prune2of4_95 "$target" prune --structure 2:4 --sparsity 0.95
  fi
done

.venv/bin/python - "$RES" > bench/results/tf_must_show.md <<'PY'
import json, sys
from pathlib import Path
res = Path(sys.argv[1])
rows = {}
for p in sorted(res.glob("*.json")):
    target, name = p.stem.split("_", 1)
    rows.setdefault(target, {})[name] = json.loads(p.read_text())
order = ["dense", "prune95", "cluster16", "prune2of4", "prune2of4_95", "prune95_cluster16"]
cmd = {"dense": "post-training-quant", "prune95": "prune --sparsity 0.95", "cluster16": "cluster --clusters 16",
       "prune2of4": "prune --structure 2:4 --sparsity 0.5", "prune2of4_95": "prune --structure 2:4 --sparsity 0.95",
       "prune95_cluster16": "prune --sparsity 0.95 --then cluster --clusters 16"}
print("# TensorFlow frontend: Must show\n")
print("Produced by `bench/tf_must_show.sh`: seed MLP (784-512-256-10), full Fashion-MNIST (60k train / 10k test),")
first = next(iter(next(iter(rows.values())).values()))
shown = ("tensorflow", "tensorflow-model-optimization", "ethos-u-vela")
print(f"{first['epochs']} float epoch, 1 fine-tune epoch per technique, seed {first['seed']}; versions: "
      + ", ".join(f"{k} {v}" for k, v in first["versions"].items() if k in shown) + ".")
print("Accuracy is measured (Keras float32 / TFLite interpreter int8 on 10k test images); weights, cycles are Vela estimates.\n")
for target, by in rows.items():
    r0 = by[order[0]]
    print(f"## {target} ({r0['target']['system_config']}, {r0['target']['memory_mode']})\n")
    print("| run (`condition tf …`) | float acc | int8 acc | sparsity | max distinct/ch | encoded weights | vs dense "
          "| NPU cycles | total cycles | vs dense | ops NPU/CPU |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    dense = by["dense"]["vela"]
    for name in order:
        if name not in by:
            continue
        r = by[name]; v = r["vela"]; acc = {a["kind"]: a["value"] for a in r["accuracy"]}
        print(f"| `{cmd[name]}` | {acc['float']:.4f} | {acc['int8']:.4f} | {r['weights']['sparsity']:.3f} "
              f"| {r['weights']['max_unique_values']} "
              f"| {v['encoded_weight_bytes']:,} B | {v['encoded_weight_bytes'] / dense['encoded_weight_bytes']:.2f}× "
              f"| {v['npu_cycles']:,} | {v['total_cycles']:,} | {v['total_cycles'] / dense['total_cycles']:.2f}× "
              f"| {v['ops_on_npu']}/{v['ops_on_cpu']} |")
    print()
    d_acc = {a["kind"]: a["value"] for a in by["dense"]["accuracy"]}["int8"]
    checks = []
    p95 = by.get("prune95")
    if p95:
        a = {x["kind"]: x["value"] for x in p95["accuracy"]}["int8"]
        checks.append(f"dense int8 accuracy {d_acc:.4f} ≥ 0.84: {'yes' if d_acc >= 0.84 else 'NO'}")
        e95 = p95["vela"]["encoded_weight_bytes"]
        checks.append(f"prune 0.95: {e95:,} B encoded ≤ 60 KB (61,440 B): {'yes' if e95 <= 61440 else 'NO'}; "
                      f"int8 accuracy {a:.4f}, {100 * (d_acc - a):+.1f} pt below dense (≤ 3 pt: {'yes' if d_acc - a <= 0.03 else 'NO'})")
    for name in ("cluster16", "prune2of4"):
        if name in by:
            e = by[name]["vela"]["encoded_weight_bytes"]
            e_dense = dense["encoded_weight_bytes"]
            checks.append(f"{cmd[name]} reduces encoded weights: {e:,} < {e_dense:,} B: {'yes' if e < e_dense else 'NO'}")
    if p95 and "prune95_cluster16" in by:
        e, p = by["prune95_cluster16"]["vela"]["encoded_weight_bytes"], p95["vela"]["encoded_weight_bytes"]
        checks.append(f"prune → cluster smaller than prune alone: {e:,} < {p:,} B: {'yes' if e < p else 'NO'}")
    for c in checks:
        print(f"- {c}")
    print()
PY
echo "wrote bench/results/tf_must_show.md" >&2
