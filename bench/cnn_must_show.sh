#!/usr/bin/env bash
# The CNN "Must show": built-in ds-cnn and mobilenet-v2, Fashion-MNIST 28×28×1 and 32×32×3, both frontends.
#   U85-128: the default matrix (post-training-quant, qat, prune 0.95, 2:4, cluster 16, prune → cluster → qat)
#            plus prune 0.9                                                  (bench/cnn_must_show.toml)
#   U55-128: post-training-quant, prune 0.95, prune 0.9                       (bench/cnn_must_show_u55.toml)
# One `condition compare` per model and target, so each model has its own report (OUT/u85-ds-cnn/report.md
# is the compare report for `--model ds-cnn`); the U55 compares link the U85 float caches (same float model).
# The checks are computed from the records and written to bench/results/cnn_must_show.md (met / NOT met),
# with the machine's load, the commit, the wall time and the exact commands.
# Re-running resumes (cells are skipped by configuration hash). After a fix that changes a technique, delete
# that technique's run folders under OUT (e.g. OUT/u85-*/*/*/qat-*) or pass FORCE=1 to redo every cell.
#   nice -n 19 bash bench/cnn_must_show.sh
#   REPORT_ONLY=1 bash bench/cnn_must_show.sh     # rewrite the table from the records in OUT
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/runs/cnn}"
MODELS="${MODELS:-ds-cnn mobilenet-v2}"
RESULTS=bench/results/cnn_must_show.md
C=(.venv/bin/condition)
mkdir -p "$OUT" bench/results/cnn_must_show

compare() {  # name, recipe, model: one compare into OUT/name, its wall time and load in OUT/name.time
  local name="$1" recipe="$2" model="$3" start status=0
  echo "bench: $name" >&2
  local load_before; load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
  start=$(date +%s)
  for attempt in 1 2 3; do  # an embedded Ray that cannot start on a loaded machine fails at once: try again
    status=0
    "${C[@]}" compare --recipe "$recipe" --model "$model" --out "$OUT/$name" ${FORCE:+--force} \
      > "$OUT/$name.out" 2> "$OUT/$name.log" || status=$?
    grep -q "timed out during startup" "$OUT/$name.log" || break
    echo "bench: $name: Ray did not start (attempt $attempt)" >&2
  done
  # one line per invocation (a resumed compare adds a line): seconds, exit status, load before, load after, start
  echo "$(( $(date +%s) - start )) $status $load_before $(cut -d' ' -f1-3 /proc/loadavg) $(date -u -d @"$start" +%FT%TZ)" \
    >> "$OUT/$name.time"
  echo "condition compare --recipe $recipe --model $model --out $OUT/$name${FORCE:+ --force}" > "$OUT/$name.cmd"
}

if [ "${REPORT_ONLY:-0}" != 1 ]; then
  for model in $MODELS; do
    compare "u85-$model" bench/cnn_must_show.toml "$model"
    for fw in tf torch; do  # the U55 cells start from the U85 run's float models
      mkdir -p "$OUT/u55-$model/$fw" "$OUT/u85-$model/$fw/.float-cache"
      [ -e "$OUT/u55-$model/$fw/.float-cache" ] || ln -s "../../u85-$model/$fw/.float-cache" "$OUT/u55-$model/$fw/.float-cache"
    done
    compare "u55-$model" bench/cnn_must_show_u55.toml "$model"
  done
fi
[ -f "$OUT/u85-ds-cnn/report.md" ] && cp "$OUT/u85-ds-cnn/report.md" bench/results/cnn_must_show/ds-cnn-u85-report.md \
  && rm -rf bench/results/cnn_must_show/plots && cp -r "$OUT/u85-ds-cnn/plots" bench/results/cnn_must_show/plots

.venv/bin/python - "$OUT" "$MODELS" > "$RESULTS" <<'PY'
import subprocess, sys
from pathlib import Path
from condition.compare.records import load_comparison
from condition.compare.table import build_sections

out, models = Path(sys.argv[1]), sys.argv[2].split()
commit = subprocess.run(["git", "log", "-1", "--format=%h %s"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results"],
                       capture_output=True, text=True).stdout.strip()  # this script's own outputs do not count
TOL_DENSE, TOL_PRUNE, TOL_TF_TORCH = 0.02, 0.03, 0.10
EXPECTED = {"u85": ["dense", "qat", "prune 0.95", "prune 0.9", "2:4", "cluster 16", "prune → cluster → qat"],
            "u55": ["dense", "prune 0.95", "prune 0.9"]}
mark = lambda ok: "not run" if ok is None else ("met" if ok else "**NOT met**")
n = lambda v: "–" if v is None else f"{v:,}"
acc = lambda v: "–" if v is None else f"{v:.4f}"


def label_of(record):
    t, o = record.techniques, record.options
    if t == ["post-training-quant"]: return "dense"
    if t == ["qat"]: return "qat"
    if t == ["cluster"]: return f"cluster {o['cluster']['clusters']}"
    if t == ["prune"]:
        p = o["prune"]
        return "2:4" if p.get("structure") == "2:4" else f"prune {p['sparsity']:g}"
    return " → ".join(t)


print("# CNN must-show: ds-cnn and mobilenet-v2 on Fashion-MNIST, both frontends, U85-128 and U55-128\n")
print("Produced by `bench/cnn_must_show.sh` (recipes `bench/cnn_must_show.toml`, `bench/cnn_must_show_u55.toml`). "
      "Every figure and every met / NOT met below is computed from the runs' metrics records by the script. "
      "Accuracy is measured (float: Keras / torch; int8: TFLite interpreter / TOSA reference model); encoded "
      "weights and cycles are Vela estimates.\n")
print(f"Commit: `{commit}`" + (" (with uncommitted changes in the tree)" if dirty else "") + "\n")
print("| compare | command | started | wall | exit | load (1/5/15 min) before → after |\n|---|---|---|---|---|---|")
for m in models:
    for t in ("u85", "u55"):
        name = f"{t}-{m}"
        tf, cf = out / f"{name}.time", out / f"{name}.cmd"
        for line in tf.read_text().splitlines() if tf.is_file() else []:
            s, status, *load = line.split()
            started = load[6] if len(load) > 6 else ""
            print(f"| {name} | `{cf.read_text().strip()}` | {started} | {int(s) // 60} min {int(s) % 60} s | {status} | "
                  f"{' '.join(load[:3])} → {' '.join(load[3:6])} |")
print("\nOne line per invocation (a re-run resumes: it runs only the cells whose folders were removed). Wall times "
      "depend on the machine's load, given before and after each compare.\n")

summary, pending = [], []
for m in models:
    for t in ("u85", "u55"):
        d = out / f"{t}-{m}"
        if not (d / "compare.json").is_file():
            print(f"## {m} · {t}: not run\n")
            continue
        comp = load_comparison(d)
        for sec in build_sections(comp):
            tgt = sec.target.label()
            e0 = next(e for e in comp.entries if e.dataset == sec.dataset)
            print(f"## {sec.model} · {sec.dataset} · {tgt}\n")
            print(f"{sec.epochs} float epochs on the first {n(e0.train_limit)} training images (1 fine-tuning epoch per "
                  f"technique, the defaults), evaluated on the first {n(e0.eval_limit)} test images; seed {sec.seed}. "
                  f"Chance is 0.10.\n")
            rows = [r for r in sec.rows if not r.is_float]
            print("| run | frontend | float | int8 | int8 − float | sparsity | max distinct (clustered layers) | encoded weights "
                  "| × dense | NPU cycles | × dense | total cycles | ops NPU/CPU | s |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
            by = {}  # frontend -> short label -> side
            for r in rows:
                for fw in sec.frontends:
                    s = r.sides[fw]
                    if s.record is None or s.status == "not run":
                        print(f"| {r.label} | {fw} | {s.status} |" + " |" * 11)
                        continue
                    lab = label_of(s.record)
                    by.setdefault(fw, {})[lab] = s
                    if s.status != "ok":  # failed, or flagged: figures that cannot be right (near chance, emptied layer)
                        print(f"| {r.label} | {fw} | {s.status.upper()}: {(s.error or '')[:160]} |" + " |" * 11)
                        continue
                    base = r.vs_baseline.get(fw, {})
                    cl = [l.unique_values for l in s.record.weights.layers if "cluster" in l.conditioned] if s.record.weights else []
                    d_acc = None if s.accuracy is None or s.float_accuracy is None else 100 * (s.accuracy - s.float_accuracy)
                    rt = lambda v: "–" if v is None else f"{v:.2f}×"
                    print(f"| {r.label} | {fw} | {acc(s.float_accuracy)} | {acc(s.accuracy)} "
                          f"| {'–' if d_acc is None else f'{d_acc:+.1f} pt'} "
                          f"| {'–' if s.sparsity is None else f'{s.sparsity:.3f}'} | {max(cl) if cl else '–'} "
                          f"| {n(s.encoded_weight_bytes)} B | {rt(base.get('encoded_weight_bytes'))} | {n(s.npu_cycles)} "
                          f"| {rt(base.get('npu_cycles'))} | {n(s.total_cycles)} | {s.ops_on_npu}/{s.ops_on_cpu} "
                          f"| {'' if s.seconds is None else f'{s.seconds:.0f}'} |")
            print()
            checks = []  # (check, frontend, ok: True / False / None = not run yet, figures)
            expected = EXPECTED[t]

            def need(fw, name, *labels):
                """The sides of `labels` if all ran ok; else None after adding the check as not run / failed."""
                got = [by.get(fw, {}).get(l) for l in labels]
                missing = [l for l, s in zip(labels, got) if s is None]
                failed = [f"{l}: {s.status} ({(s.error or '')[:120]})" for l, s in zip(labels, got) if s is not None and s.status != "ok"]
                if failed:
                    checks.append((name, fw, False, "; ".join(failed)))
                elif missing:
                    checks.append((name, fw, None, "not run yet: " + ", ".join(missing)))
                else:
                    return got
                return None

            for fw in sec.frontends:
                c = by.get(fw, {})
                cpu = [(lab, s.record.vela.cpu_ops if s.record.vela else []) for lab, s in c.items() if s.status == "ok" and s.ops_on_cpu]
                bad = [f"{lab}: {s.status} ({(s.error or '')[:120]})" for lab, s in c.items() if s.status != "ok"]
                missing = [l for l in expected if l not in c]
                figs = [f"{lab}: {len(ops)} on CPU ({', '.join(sorted(set(ops)))})" for lab, ops in cpu] + bad
                checks.append(("all ops on the NPU, every run", fw, False if figs else (None if missing else True),
                               "; ".join(figs + ([f"not run yet: {', '.join(missing)}"] if missing else []))
                               or f"{len(c)} runs, 0 ops on the CPU"))
                if (g := need(fw, "float trains (≥ 0.5, chance 0.10)", "dense")):
                    dense, = g
                    checks.append(("float trains (≥ 0.5, chance 0.10)", fw, dense.float_accuracy >= 0.5,
                                   f"float {acc(dense.float_accuracy)}"))
                if (g := need(fw, "dense int8 within 2 points of float", "dense")):
                    dense, = g
                    dd = dense.float_accuracy - dense.accuracy
                    checks.append(("dense int8 within 2 points of float", fw, dd <= TOL_DENSE,
                                   f"float {acc(dense.float_accuracy)}, int8 {acc(dense.accuracy)} ({-100 * dd:+.1f} pt)"))
                name = "prune 0.9: ≤ 0.5× dense encoded weights, int8 within 3 points of dense"
                if (g := need(fw, name, "dense", "prune 0.9")):
                    dense, p9 = g
                    x = p9.encoded_weight_bytes / dense.encoded_weight_bytes
                    da = dense.accuracy - p9.accuracy
                    checks.append((name, fw, x <= 0.5 and da <= TOL_PRUNE,
                                   f"{n(p9.encoded_weight_bytes)} / {n(dense.encoded_weight_bytes)} B = {x:.2f}× "
                                   f"({'ok' if x <= 0.5 else 'over'}); int8 {acc(p9.accuracy)} vs dense {acc(dense.accuracy)}: "
                                   f"{-100 * da:+.1f} pt ({'ok' if da <= TOL_PRUNE else 'over'}); sparsity {p9.sparsity:.3f}"))
                if "cluster 16" in expected:
                    name = "cluster 16: ≤ 16 values per layer (or channel), ≤ 0.6× dense encoded weights"
                    if (g := need(fw, name, "dense", "cluster 16")):
                        dense, cl = g
                        layers = cl.record.weights.layers
                        done = [l for l in layers if "cluster" in l.conditioned]
                        over = [f"{l.name} {l.unique_values}/{l.unique_axis}" for l in done if l.unique_values > 16]
                        left = [f"{l.name} ({l.left_out.get('cluster', '')})" for l in layers if "cluster" not in l.conditioned]
                        x = cl.encoded_weight_bytes / dense.encoded_weight_bytes
                        checks.append((name, fw, bool(done) and not over and x <= 0.6,
                                       f"{len(done)} of {len(layers)} layers clustered, "
                                       f"max {max((l.unique_values for l in done), default=0)} values"
                                       + (f", over 16: {', '.join(over)}" if over else "")
                                       + (f"; left out: {', '.join(left)}" if left else "")
                                       + f"; {n(cl.encoded_weight_bytes)} B = {x:.2f}× dense ({'ok' if x <= 0.6 else 'over'})"))
                if "2:4" in expected:
                    if (g := need(fw, "2:4 lowers NPU cycles", "dense", "2:4")):
                        dense, two = g
                        checks.append(("2:4 lowers NPU cycles", fw, two.npu_cycles < dense.npu_cycles,
                                       f"{n(two.npu_cycles)} vs dense {n(dense.npu_cycles)} ({two.npu_cycles / dense.npu_cycles:.3f}×); "
                                       f"{sum(l.two_four for l in two.record.weights.layers)} of {len(two.record.weights.layers)} "
                                       "layers in the 2:4 format"))
            name = "tf/torch dense encoded weights within 10 %"
            dt, dto = by.get("tf", {}).get("dense"), by.get("torch", {}).get("dense")
            if dt is None or dto is None:
                checks.append((name, "both", None, "not run yet"))
            elif not dt.status == dto.status == "ok":
                checks.append((name, "both", False, f"dense tf {dt.status}, torch {dto.status}"))
            else:
                x = dt.encoded_weight_bytes / dto.encoded_weight_bytes
                checks.append((name, "both", abs(x - 1) <= TOL_TF_TORCH,
                               f"tf {n(dt.encoded_weight_bytes)} B, torch {n(dto.encoded_weight_bytes)} B ({x:.3f}×)"))
            if sec.model == "ds-cnn" and t == "u85":
                name = "compare report: per-layer rows line up (the same layer's tf and torch names side by side)"
                both, mis = 0, []
                for r in rows:
                    a, b = r.sides.get("tf"), r.sides.get("torch")
                    if not (a and b and a.status == b.status == "ok" and a.record.weights and b.record.weights):
                        continue
                    both += 1
                    na = [l.name for l in a.record.weights.layers]
                    nb = [l.name for l in b.record.weights.layers]
                    if na != nb:
                        pairs = [f"{x} / {y}" for x, y in zip(na, nb) if x != y]
                        mis.append(f"{r.label}: {len(pairs)} of {max(len(na), len(nb))} differ"
                                   + (f" (layer counts {len(na)} / {len(nb)})" if len(na) != len(nb) else "")
                                   + f", e.g. tf / torch: {'; '.join(pairs[:3])}")
                first = next((r.sides["tf"].record.weights.layers for r in rows if r.sides.get("tf") and r.sides["tf"].record
                              and r.sides["tf"].record.weights), [])
                checks.append((name, "both", None if not both else not mis,
                               " | ".join(mis) if mis else (f"{both} rows with both frontends, layers " + ", ".join(l.name for l in first)
                                                            if both else "no row has both frontends yet")))
            print("| check | frontend | | figures |\n|---|---|---|---|")
            for name, fw, ok, fig in checks:
                print(f"| {name} | {fw} | {mark(ok)} | {fig} |")
                if ok is None:
                    pending.append(f"{sec.model} · {sec.dataset} · {sec.target.npu} · {fw}: {name}")
                elif not ok:
                    summary.append(f"{sec.model} · {sec.dataset} · {sec.target.npu} · {fw}: {name} — {fig}")
            print()
print("## Not met\n")
print("\n".join(f"- {s}" for s in summary) if summary else ("Every check that ran is met." if pending else "Every check is met."))
if pending:
    print(f"\n{len(pending)} checks wait for runs not finished yet:\n")
    print("\n".join(f"- {s}" for s in pending))
print("\nThe ds-cnn compare report (U85-128, both data sets, per-layer panels): "
      "[cnn_must_show/ds-cnn-u85-report.md](cnn_must_show/ds-cnn-u85-report.md).")
PY
echo "wrote $RESULTS" >&2
