"""`condition search`: the smallest, fastest int8 model within an accuracy budget, per frontend, on
Ray Tune + Optuna. Parsing and printing only; the work is in compare/search.py."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from condition.cli.commands.common import DURATION, build_limits, build_target, limit_options, target_options
from condition.cli.commands.compare import CompareProgress, address_option

DEFAULT_OUT = "runs/search"


class SearchProgress:
    """Trials done / total with the best so far per frontend, one line per finished trial."""

    def begin(self, total: int, done: int, where: str) -> None:
        click.echo(f"{'nothing to run' if done >= total else 'running on ' + where}: {total} trials, {done} done before", err=True)

    def trial(self, outcome: Any, done: int, total: int, best: dict[str, Any]) -> None:
        from condition.compare.search_space import describe

        if outcome.status == "ok":
            verdict = "within budget" if outcome.feasible else outcome.misfit if not outcome.fits else "misses accuracy"
            what = (f"{outcome.weights:,} B, {outcome.cycles:,} cycles, int8 {outcome.accuracy:.4f} "
                    f"(needs {outcome.required_accuracy:.4f}): {verdict}")
        else:
            what = f"{outcome.status.upper()} — {outcome.note}"
        line = f"[{done:>{len(str(total))}}/{total}] {outcome.frontend} {describe(outcome.params)}: {what}"
        bests = [f"{f} {b.weights / 1024:.1f} KiB, cycles {_ratio(b.cycles, b.reference_cycles)} dense ref / "
                 f"{_ratio(b.cycles, b.baseline_cycles)} same-epochs" for f, b in sorted(best.items())]
        click.echo(line + (f"  | best: {', '.join(bests)}" if bests else ""), err=True)


def _ratio(value: int | None, of: int | None) -> str:
    return f"{value / of:.3f}×" if value and of else "–"


@click.command("search")
@click.option("--frontend", type=click.Choice(["tf", "torch", "both"]), default="both", show_default=True,
              help="Which frontends to search.")
@target_options
@limit_options
@click.option("--max-ms", default=None, type=click.FloatRange(min=0, min_open=True), metavar="MS",
              help="A trial whose Vela inference time (at the system config's clock) exceeds this is infeasible.")
@click.option("--model", default="mlp", show_default=True, help="Built-in name or your model file.")
@click.option("--dataset", default="fashion-mnist", show_default=True, help="fashion-mnist, an IDX folder or an .npz.")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=0), help="Float training epochs before any technique.")
@click.option("--trials", default=20, show_default=True, type=click.IntRange(min=1),
              help="Trials per frontend (resumed searches count earlier ones).")
@click.option("--time-budget", default=None, type=DURATION, metavar="DURATION",
              help="Stop starting trials after this long (the running ones are stopped too): 90s, 30m, 1h30m or plain seconds.")
@click.option("--max-accuracy-drop", default=1.0, show_default=True, type=click.FloatRange(0, 100), metavar="POINTS",
              help="Int8 accuracy may fall this many points below the dense int8 model trained for the same total epochs.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for weights, shuffling, calibration and the sampler.")
@click.option("--train-limit", default=None, type=click.IntRange(min=1), help="Train on the first N images only.")
@click.option("--eval-limit", default=None, type=click.IntRange(min=1), help="Evaluate on the first N test images only.")
@click.option("--fvp", "fvp", default=None, is_flag=False, flag_value="auto", metavar="PATH",
              help="Measure cycles on a Corstone FVP (binary or folder) instead of Vela's estimate.")
@address_option
@click.option("--out", default=DEFAULT_OUT, show_default=True, type=click.Path(file_okay=False),
              help="Trials, baselines and the report go here.")
def search(**opts: Any) -> None:
    """Search channel-prune → prune → cluster → qat / post-training-quant chains and their options for the fewest
    total cycles and encoded weight bytes whose int8 accuracy stays within --max-accuracy-drop
    points of the dense int8 baseline trained as long (the same total epochs), and, when given, fit
    --sram-limit, --flash-limit and --max-ms (a trial over one is infeasible; the report counts them).

    \b
    The space (per frontend, by the --target's NPU):
      U85:      prune 2:4 (zeros U85 skips), sparsity 0.80-0.98 (further zeros pruned
                inside the pattern), constant schedule
      U55, U65: prune unstructured, sparsity 0.50-0.98, constant or polynomial schedule
      both:     channel-prune first: none, or 0.5, 0.75 or 0.875 of every layer's
                channels (fewer MACs on every NPU); fine-tuning epochs 1-3;
                clusters none, 4, 8, 16 or 32; qat (1-2 epochs) or post-training-quant
    First, on each frontend, three seed points: sparsity 0.95 with 8 clusters, 0.97 with
    8 (3 fine-tuning epochs, 1 QAT epoch), then channel-prune 0.75 → 0.85 with 4 clusters →
    post-training-quant on U85 (0.5 → 0.9 with 8 clusters → 1 QAT epoch on U55/U65; 2
    fine-tuning epochs each); TPE proposes from the 4th trial on.

    \b
    Ray Tune drives Optuna's constrained multi-objective TPE sampler, one study per frontend.
    Every trial is an ordinary run folder; running the same command again resumes (finished
    trials are not redone). Writes search.md / search.html with the Pareto fronts, the best
    model of each frontend beside the dense reference (the dense int8 model of the float
    epochs) and its same-epochs baseline, and the command line that reproduces it.
    One command per OUT: while a search or compare works on OUT (it holds OUT/.lock), another
    one on the same OUT refuses at once, naming it; a lock left by a process that is gone is taken over.
    """
    from condition.compare.out_lock import hold_out
    from condition.compare.search import SearchSpec, run_search
    from condition.compare.search_report import write_search_report
    from condition.compare.search_space import reference_config
    from condition.run import RunConfig

    frontends = ("tf", "torch") if opts["frontend"] == "both" else (opts["frontend"],)
    out = Path(opts["out"])
    fvp = opts["fvp"]
    bases = tuple(reference_config(RunConfig(
        frontend=f, chain=(), target=build_target(opts), model=opts["model"], dataset=opts["dataset"], epochs=opts["epochs"],
        seed=opts["seed"], out=out, train_limit=opts["train_limit"], eval_limit=opts["eval_limit"],
        fvp=None if fvp in (None, "auto") else fvp, run_fvp=fvp is not None)) for f in frontends)
    spec = SearchSpec(bases, trials=opts["trials"], max_accuracy_drop=opts["max_accuracy_drop"],
                      time_budget_s=opts["time_budget"], seed=opts["seed"], limits=build_limits(opts))
    click.echo(f"condition search: {' and '.join(frontends)}, {opts['trials']} trials each → {out}", err=True)
    references = CompareProgress()
    with hold_out(out):  # one writer per OUT: a second compare/search on it refuses, naming this one
        try:
            run_search(spec, address=opts["address"], events=SearchProgress(), reference_events=references)
        finally:
            references.close()
        report = write_search_report(out)
    click.echo(report.text)
    click.echo(f"\nreport: {report.html}\n        {report.markdown}", err=False)
    sys.stdout.flush()
