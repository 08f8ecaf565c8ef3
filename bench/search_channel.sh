#!/usr/bin/env bash
# The seed MLP's search with the channel dimension (issue 22): `condition search --frontend both --max-accuracy-drop 1
# --trials 3` on all of Fashion-MNIST, U85-128 then U55-128: the three seed points per frontend (the third is the
# channel seed, compare/search_space.py CHANNEL_SEED: on U85 a quarter of the channels, 2:4 0.85, 4 clusters,
# post-training-quant; on U55 half, 0.9, 8 clusters, QAT), judged against each trial's same-epochs dense baseline. Writes bench/results/search_channel.md: the commands, wall time, load and each search's summary as printed.
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=bench/results/search_channel.md
{
  echo "# condition search with channel pruning (issue 22)"
  echo
  echo "Produced by \`bench/search_channel.sh\` at commit \`$(git log -1 --format='%h %s')\`. Cycles and encoded weights"
  echo "are Vela 5.2.0 estimates; accuracy is int8, measured on the 10,000 test images."
} > "$RESULTS"
for target in ethos-u85-128 ethos-u55-128; do
  OUT="bench/runs/search_channel_${target}"
  rm -rf "$OUT"
  load="$(cut -d' ' -f1-3 /proc/loadavg)"; start=$(date +%s)
  cmd=(.venv/bin/condition search --frontend both --max-accuracy-drop 1 --trials 3 --target "$target" --out "$OUT")
  "${cmd[@]}" > "$OUT.summary" 2> "$OUT.log" || true
  {
    echo; echo "## $target"; echo
    echo "\`${cmd[*]}\`: $(( $(date +%s) - start )) s on the 2-core machine, load before $load, after $(cut -d' ' -f1-3 /proc/loadavg)."
    echo; echo '```'; cat "$OUT.summary"; echo '```'
  } >> "$RESULTS"
done
echo "bench: wrote $RESULTS" >&2
