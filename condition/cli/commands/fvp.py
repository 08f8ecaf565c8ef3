"""`condition fvp parse LOG` and `condition fvp import LOG --record RUN_DIR`: Ethos-U PMU counters
from a log captured on an FVP or a board, printed or attached to a run's metrics record."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import click

from condition.errors import ArtifactError
from condition.cli.summary import FVP_COUNTERS


def _read_log(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        raise ArtifactError(path, "log file not found") from None
    except IsADirectoryError:
        raise ArtifactError(path, "is a folder, expected a log file") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot read ({exc.strerror})") from None


@click.group("fvp")
def fvp() -> None:
    """Ethos-U PMU counters from FVP or board logs.

    \b
    Understands ExecuTorch's arm_executor_runner, the ethos-u core software / TFLite-Micro
    samples (ethosu_pmu_cntrK, ethosu_pmu_cycle_cntr) and the ML Embedded Evaluation Kit's
    profiler ("NPU ACTIVE cycles: N"). To run on an FVP, pass --fvp to `condition tf|torch|compare`.
    """


@fvp.command("parse")
@click.argument("log", type=click.Path(dir_okay=True))
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object: pmu_cycle_counter, events, inferences and the normalised fields (null when absent).")
def parse(log: str, as_json: bool) -> None:
    """Print the PMU counters in LOG."""
    from condition.backend.pmu_log import parse_counters

    counters = parse_counters(_read_log(log), source=log)
    if as_json:
        click.echo(json.dumps(counters.as_json(), indent=2))
        return
    norm = counters.normalised()
    rows = [("log format", counters.format), ("inferences", str(counters.inferences))]
    if counters.pmu_cycle_counter is not None:
        rows.append(("PMU cycle counter", f"{counters.pmu_cycle_counter:,}"))
    rows += [(label, f"{norm[key]:,}") for key, label in FVP_COUNTERS if norm[key] is not None]
    rows += [(f"  {name}", f"{value:,}") for name, value in counters.events.items()]
    width = max(len(r[0]) for r in rows)
    click.echo("\n".join(f"{a:<{width}}  {b}" for a, b in rows))
    if counters.inferences > 1:
        click.echo(f"(totals over {counters.inferences} inferences)")


@fvp.command("import")
@click.argument("log", type=click.Path(dir_okay=True))
@click.option("--record", "record_dir", required=True, type=click.Path(), metavar="RUN_DIR",
              help="A run folder holding metrics.json (or the metrics.json itself).")
@click.option("--platform", default="imported log", show_default=True,
              help="Where the log came from, e.g. FVP_Corstone_SSE-320 or a board name.")
def import_(log: str, record_dir: str, platform: str) -> None:
    """Attach the PMU counters in LOG to the run's metrics record (replacing earlier FVP figures)."""
    from condition.backend.metrics import RECORD_NAME, MetricsRecord
    from condition.backend.pmu_log import parse_pmu_log

    folder = Path(record_dir)
    if folder.name == RECORD_NAME:
        folder = folder.parent
    if not folder.is_dir():
        raise ArtifactError(record_dir, "no such run folder")
    record = MetricsRecord.read(folder)  # a folder without a record is an ArtifactError
    measurement = parse_pmu_log(_read_log(log), source=log, platform=platform, log_path=str(Path(log).resolve()))
    note = f"FVP counters imported from {log} ({platform}); target in the record: {record.target.label()}"
    record = replace(record, fvp=measurement, notes=[n for n in record.notes if not n.startswith("FVP counters imported")] + [note])
    path = record.write(folder)
    active = measurement.npu_active_cycles
    click.echo(f"attached PMU counters to {path}" + (f" (NPU active cycles {active:,})" if active is not None else ""))
