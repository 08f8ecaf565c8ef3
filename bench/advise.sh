#!/usr/bin/env bash
# condition advise must-show: the seed MLP dense and 95 % pruned on U85-128 and U55-128 (both frontends),
# and a compare of the techniques the advice bounds (its report's "Advice vs measured" section).
# Writes under ${OUT:-/tmp/advise-bench}; results are quoted in bench/results/advise.md.
set -euo pipefail
cd "$(dirname "$0")/.."
C=".venv/bin/condition"
O="${OUT:-/tmp/advise-bench}"
L="--train-limit 10000 --eval-limit 1000"
t() { echo "### $*"; /usr/bin/time -f "### wall %e s" "$@"; }
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
