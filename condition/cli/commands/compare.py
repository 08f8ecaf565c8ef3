"""`condition compare` (run the matrix, then write the report) and `condition report DIR`
(re-render the report from saved records). Parsing and printing only; the work is in compare/."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from condition.cli.commands.common import build_limits, build_target, image_size_callback, limit_options, target_options

# Every multi-run command runs on Ray (compare/cluster.py); shared by `compare` and `search`.
address_option = click.option(
    "--address", default=None, metavar="HOST:PORT", envvar="RAY_ADDRESS", show_envvar=True,
    help="Run on this existing Ray cluster [default: an embedded Ray on this machine's cores, stopped at exit].")

DEFAULT_OUT = "runs/compare"
QUICK_OUT = "runs/compare-quick"


def _given(ctx: click.Context, name: str) -> bool:
    return ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP, None)


def build_recipe(ctx: click.Context, opts: dict[str, Any]):
    """Recipe file or default matrix, made quick if asked, with the options the user typed on top."""
    from condition.compare.recipe import default_recipe, load_recipe, quicken

    recipe = load_recipe(opts["recipe"]) if opts["recipe"] else default_recipe()
    if opts["quick"]:
        recipe = quicken(recipe)
    changes: dict[str, Any] = {}
    if _given(ctx, "frontend"):
        changes["frontends"] = ("tf", "torch") if opts["frontend"] == "both" else (opts["frontend"],)
    if _given(ctx, "model"):
        changes["models"] = (opts["model"],)
    if _given(ctx, "dataset"):
        changes["datasets"] = (opts["dataset"],)
    if any(_given(ctx, n) for n in ("target", "system_config", "memory_mode", "vela_config")):
        changes["targets"] = (build_target(opts),)
    for name in ("epochs", "seed", "train_limit", "eval_limit", "test_split", "image_size"):
        if _given(ctx, name):
            changes[name] = opts[name]
    if _given(ctx, "sram_limit") or _given(ctx, "flash_limit"):
        given = build_limits(opts)
        changes["limits"] = dataclasses.replace(recipe.limits, **{k: v for k, v in vars(given).items() if v is not None})
    return dataclasses.replace(recipe, **changes) if changes else recipe


class CompareProgress:
    """Cells done / total on a tqdm bar with each running cell's current step; one line per
    finished cell (above the bar on a terminal, plain lines in logs and CI)."""

    def __init__(self) -> None:
        self.bar = None
        self.total = 0
        self.finished = 0
        self.running: dict[str, str] = {}

    def begin(self, total: int, skipped: int, jobs: int, threads: int, where: str) -> None:
        from tqdm import tqdm

        self.total = total
        if jobs:
            click.echo(f"running on {where}: {jobs} worker(s) × {threads} thread(s)", err=True)
        self.bar = tqdm(total=total, desc="compare", unit="cell", file=sys.stderr, disable=not sys.stderr.isatty(),
                        bar_format="{desc}: {n_fmt}/{total_fmt} cells |{bar}| {elapsed} {postfix}", dynamic_ncols=True)

    def step(self, cell: Any, step: str, fraction: float | None) -> None:
        self.running[cell.title] = step + (f" {fraction:.0%}" if fraction not in (None, 0.0, 1.0) else "")
        self._postfix()

    def done(self, outcome: Any) -> None:
        self.finished += 1
        self.running.pop(outcome.cell.title, None)
        how = {"skipped": "done before", "ok": f"ok in {outcome.seconds:,.0f} s", "failed": f"FAILED after {outcome.seconds:,.0f} s",
               "flagged": f"FLAGGED after {outcome.seconds:,.0f} s"}
        line = f"[{self.finished:>{len(str(self.total))}}/{self.total}] {outcome.cell.title}: {how.get(outcome.status, outcome.status)}"
        if outcome.status in ("failed", "flagged") and outcome.error:
            line += f" — {outcome.error}"
        self._write(line)
        if self.bar is not None:
            self.bar.update(1)
            self._postfix()

    def _postfix(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(" | ".join(f"{k}: {v}" for k, v in self.running.items()))

    def _write(self, line: str) -> None:
        if self.bar is not None and not self.bar.disable:
            self.bar.write(line, file=sys.stderr)
        else:
            click.echo(line, err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@click.command("compare")
@click.option("--recipe", type=click.Path(dir_okay=False), default=None, metavar="FILE.toml",
              help="Your matrix: models × data sets × targets × technique chains (see compare/recipe.py). Default: the built-in matrix.")
@click.option("--quick", is_flag=True, help="Smoke version: small train/test subsets and one epoch (under a minute on 2 cores).")
@click.option("--frontend", type=click.Choice(["tf", "torch", "both"]), default="both", show_default=True, help="Which frontends to run.")
@target_options
@limit_options
@click.option("--model", default="mlp", show_default=True, help="Built-in name or your model file (overrides the recipe's models).")
@click.option("--dataset", default="fashion-mnist", show_default=True,
              help="fashion-mnist, fashion-mnist-32x32x3, an IDX folder, an .npz or an image folder (overrides the recipe's data sets).")
@click.option("--test-split", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="FRACTION",
              help="Image folder of class folders: fraction of each class kept for testing [default: 0.2].")
@click.option("--image-size", default=None, metavar="N|HxW", callback=image_size_callback, help="Resize every image to N×N or H×W.")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=0), help="Float training epochs.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for weights, shuffling and calibration.")
@click.option("--train-limit", default=None, type=click.IntRange(min=1), help="Train on the first N images only.")
@click.option("--eval-limit", default=None, type=click.IntRange(min=1), help="Evaluate on the first N test images only.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help=f"Runs and the report go here [default: {DEFAULT_OUT}, or {QUICK_OUT} with --quick].")
@click.option("--jobs", "-j", default=None, type=click.IntRange(min=1),
              help="Cells at once, each single-threaded when there are as many as CPUs [default: one per CPU of the Ray cluster].")
@address_option
@click.option("--force", is_flag=True, help="Redo cells that already have a finished record.")
@click.option("--fvp", "fvp", default=None, is_flag=False, flag_value="auto", metavar="PATH",
              help="Also run every cell on a Corstone FVP (binary or folder; bare --fvp searches CONDITION_FVP_DIR and PATH).")
@click.pass_context
def compare(ctx: click.Context, **opts: Any) -> None:
    """Condition the model with every technique on both frontends, compile all of it for the same
    Target, and write a side-by-side report (report.md, report.html, results.csv, results.json).

    \b
    Cells already finished with the same configuration are skipped, so an interrupted run resumes
    where it stopped; a failing cell is recorded with its error and the others go on.
    One command per OUT: while a compare or search works on OUT (it holds OUT/.lock), another
    one on the same OUT refuses at once, naming it (pid, host, command, start time); a lock
    left by a process that is gone is taken over.
    Cycle and traffic figures are Vela estimates unless marked as FVP measurements.
    """
    from condition.compare.out_lock import hold_out

    recipe = build_recipe(ctx, opts)
    out = Path(opts["out"] or (QUICK_OUT if opts["quick"] else DEFAULT_OUT))
    with hold_out(out):  # one writer per OUT: a second compare/search on it refuses, naming this one
        _compare(recipe, out, opts)


def _compare(recipe: Any, out: Path, opts: dict[str, Any]) -> None:
    from condition.compare.advice import write_comparison_advice  # `condition advise` on each baseline cell
    from condition.compare.matrix import expand
    from condition.compare.records import load_comparison, write_manifest
    from condition.compare.report import write_report
    from condition.compare.report_text import render_text
    from condition.compare.runner import is_done, run_cells
    from condition.compare.table import build_sections

    fvp = opts["fvp"]
    cells = expand(recipe, out, fvp=None if fvp in (None, "auto") else fvp, run_fvp=fvp is not None)
    write_manifest(out, cells, recipe.source, recipe.limits)
    todo = cells if opts["force"] else [c for c in cells if not is_done(c.config)]
    click.echo(f"condition compare: {len(cells)} cells ({len(recipe.frontends)} frontends × {len(recipe.chains)} chains"
               f"{_more(recipe)}), {len(cells) - len(todo)} already done → {out}", err=True)
    progress = CompareProgress()
    try:
        outcomes = run_cells(cells, jobs=opts["jobs"], force=opts["force"], events=progress, address=opts["address"])
    finally:
        progress.close()
    comparison = load_comparison(out)
    for problem in write_comparison_advice(comparison):
        click.echo(f"condition: {problem}", err=True)
    files = write_report(out, comparison)
    click.echo(render_text(build_sections(comparison)))
    click.echo(f"\nreport: {files.html}\n        {files.markdown}\n        {files.csv}, {files.json}")
    failed = [o for o in outcomes if o.status == "failed"]
    flagged = [e for e in comparison.entries if e.status == "flagged"]  # this run's and earlier runs'
    if failed:
        click.echo(f"condition: {len(failed)} of {len(cells)} cells failed (listed in the report; re-run to retry them)", err=True)
    if flagged:
        click.echo(f"condition: {len(flagged)} of {len(cells)} cells flagged: their figures cannot be right, or they do not fit a "
                   "limit (listed in the report with the reasons; the same configuration gives the same result, so a re-run "
                   "does not change them)", err=True)
    if failed or flagged:
        raise click.exceptions.Exit(1)


def _more(recipe: Any) -> str:
    axes = (("models", recipe.models), ("data sets", recipe.datasets), ("targets", recipe.targets))
    extra = [f"{len(v)} {name}" for name, v in axes if len(v) > 1]
    return (" × " + " × ".join(extra)) if extra else ""


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False))
def report(directory: str) -> None:
    """Re-render the compare (or search) report in DIRECTORY from its saved metrics records (nothing is run)."""
    from condition.compare.search_report import is_search, write_search_report

    if is_search(directory):
        search_report = write_search_report(directory)
        click.echo(search_report.text)
        click.echo(f"\nreport: {search_report.html}\n        {search_report.markdown}")
        return
    from condition.compare.records import load_comparison
    from condition.compare.report import write_report
    from condition.compare.report_text import render_text
    from condition.compare.table import build_sections

    comparison = load_comparison(directory)
    files = write_report(directory, comparison)
    click.echo(render_text(build_sections(comparison)))
    click.echo(f"\nreport: {files.html}\n        {files.markdown}\n        {files.csv}, {files.json}")
