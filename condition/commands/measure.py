"""`condition measure FILE`: an artifact someone already has, measured on a Target without
conditioning — compiled where needed, counted, a metrics record written, the summary printed.

One measurer per file type (MEASURERS, by suffix); each returns the record's fields. The run
folder OUT/measure/<stem>-<hash>/ appears only when everything succeeded.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Callable

import click

from condition.backend.atomic import atomic_folder
from condition.backend.metrics import AccuracyResult, MetricsRecord, config_hash, tool_versions
from condition.backend.target import Target
from condition.commands.common import build_target, target_options
from condition.errors import ArtifactError

# (artifact, target, data set or None, eval limit, work folder) -> MetricsRecord fields
Measurer = Callable[[Path, Target, str | None, int | None, Path], dict[str, Any]]


def measure_tflite(path: Path, target: Target, dataset: str | None, eval_limit: int | None, work: Path) -> dict[str, Any]:
    """An int8 .tflite: weights counted on its tensors, Vela compile, interpreter accuracy if data."""
    from condition.backend.accuracy import int8_accuracy
    from condition.backend.tflite_file import require_int8
    from condition.backend.vela import compile_tflite
    from condition.frontends.tf.weights import weight_stats  # reads the flatbuffer, no tensorflow

    require_int8(path)
    local = work / path.name
    shutil.copyfile(path, local)
    fields: dict[str, Any] = {"weights": weight_stats(local), "accuracy": []}
    compiled = compile_tflite(local, target, work / "vela")
    fields["vela"] = compiled.estimate
    fields["artifacts"] = [("tflite", local), ("vela_tflite", compiled.vela_tflite)]
    if dataset:
        from condition.datasets import load_dataset

        ds = load_dataset(dataset).subset(None, eval_limit)
        acc = int8_accuracy(local, ds.normalised("test"), ds.y_test)
        fields["accuracy"] = [AccuracyResult("int8", acc.value, acc.evaluator, acc.images)]
    return fields


def measure_pte(path: Path, target: Target, dataset: str | None, eval_limit: int | None, work: Path) -> dict[str, Any]:
    """An Ethos-U .pte: read by the torch frontend (executorch imported only for .pte files)."""
    from condition.frontends.torch.pte import measure_pte as measure

    return measure(path, target, dataset, eval_limit, work)


MEASURERS: dict[str, Measurer] = {".tflite": measure_tflite, ".pte": measure_pte}


def measure_file(path: Path, target: Target, dataset: str | None, eval_limit: int | None, out: Path) -> tuple[MetricsRecord, Path]:
    """Measure `path` into OUT/measure/<stem>-<hash>/ (renamed into place only on success)."""
    if not path.is_file():
        raise ArtifactError(str(path), "file not found")
    measurer = MEASURERS.get(path.suffix.lower())
    if measurer is None:
        raise ArtifactError(str(path), f"cannot measure {path.suffix or 'a file without suffix'!r} files (give " + " or ".join(MEASURERS) + ")")
    st = path.stat()
    identity = {"file": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                "target": target.as_dict(), "dataset": dataset, "eval_limit": eval_limit}
    run_dir = out / "measure" / f"{path.stem}-{config_hash(identity)}"
    with atomic_folder(run_dir) as work:
        fields = measurer(path, target, dataset, eval_limit, work)
        estimate = fields["vela"]
        notes = [f"{estimate.ops_on_cpu} op(s) stay on the CPU (Vela cannot place them on the NPU): " + ", ".join(estimate.cpu_ops)] if estimate.ops_on_cpu else []
        notes += fields.get("notes", [])
        if not dataset:
            notes.append("no --dataset given: accuracy not measured")
        from condition.backend.metrics import Artifact

        record = MetricsRecord(
            frontend="measure", techniques=[], options={"file": str(path)}, model=path.stem,
            dataset=dataset or "", target=target, seed=0, epochs=0,
            accuracy=fields["accuracy"], weights=fields.get("weights"), vela=estimate, notes=notes,
            artifacts=[Artifact(kind, str(p.relative_to(work)), p.stat().st_size) for kind, p in fields["artifacts"]],
            versions=tool_versions(), config_hash=config_hash(identity),
        )
        record.write(work)
    return record, run_dir


@click.command(name="measure")
@click.argument("artifact", metavar="FILE")
@target_options
@click.option("--dataset", default=None, help="Also measure int8 top-1 on this data set's test images (fashion-mnist, IDX folder or .npz).")
@click.option("--eval-limit", default=None, type=click.IntRange(min=1), help="Evaluate on the first N test images only.")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Records land in OUT/measure/<name>-<hash>/.")
@click.option("--json", "as_json", is_flag=True, help="Print the metrics record as JSON instead of a table.")
def measure(artifact: str, dataset: str | None, eval_limit: int | None, out: str, as_json: bool, **opts: Any) -> None:
    """Measure an artifact you already have (an int8 .tflite) on a Target, without conditioning.

    Compiles it with Vela, counts sparsity and distinct values on its int8 weights, and with
    --dataset runs it on the TFLite interpreter for int8 accuracy. A float-only or corrupt file
    is refused with one line.

    \b
    Example:  condition measure model_int8.tflite --target ethos-u55-128 --dataset fashion-mnist
    """
    from condition.summary import format_summary

    record, run_dir = measure_file(Path(artifact), build_target(opts), dataset, eval_limit, Path(out))
    click.echo(json.dumps(record.to_dict(), indent=2) if as_json else format_summary(record, run_dir))
