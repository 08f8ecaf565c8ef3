"""`condition measure FILE`: an artifact someone already has, measured on a Target without
conditioning (the library is condition/measure.py; this module only parses and prints)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from condition.cli.commands.common import build_limits, build_target, limit_options, target_options


@click.command(name="measure")
@click.argument("artifact", metavar="FILE")
@target_options
@limit_options
@click.option("--dataset", default=None, help="Also measure int8 top-1 on this data set's test images (fashion-mnist, IDX folder or .npz).")
@click.option("--eval-limit", default=None, type=click.IntRange(min=1), help="Evaluate on the first N test images only.")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Records land in OUT/measure/<name>-<hash>/.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics record as JSON instead of a table.")
def measure(artifact: str, dataset: str | None, eval_limit: int | None, out: str, as_json: bool, **opts: Any) -> None:
    """Measure an artifact you already have (an int8 .tflite) on a Target, without conditioning.

    Compiles it with Vela, counts sparsity and distinct values on its int8 weights, and with
    --dataset runs it on the TFLite interpreter for int8 accuracy. A float-only or corrupt file
    is refused with one line.

    \b
    Example:  condition measure model_int8.tflite --target ethos-u55-128 --dataset fashion-mnist
    """
    from condition.cli.summary import format_summary

    from condition.measure import measure_file

    record, run_dir = measure_file(Path(artifact), build_target(opts), dataset, eval_limit, Path(out), build_limits(opts))
    click.echo(json.dumps(record.to_dict(), indent=2) if as_json else format_summary(record, run_dir))
    for problem in record.problems:  # over a budget: flagged like a run (exit 3)
        click.echo(f"condition: result flagged: {problem}", err=True)
    if record.problems:
        raise click.exceptions.Exit(3)
