"""Measure an artifact someone already has (an int8 .tflite, an Ethos-U .pte) on a Target, without
conditioning: the frontend that owns the file type reads and compiles it, this module writes one
metrics record into OUT/measure/<stem>-<hash>/ (renamed into place only on success).
"""
from __future__ import annotations

from pathlib import Path

from condition.backend.atomic import atomic_folder
from condition.backend.budget import Limits, judge
from condition.backend.metrics import Artifact, MetricsRecord, config_hash, tool_versions
from condition.backend.target import Target
from condition.errors import ArtifactError
from condition.run import ARTIFACT_FRONTENDS, load_frontend


def measure_file(path: Path, target: Target, dataset: str | None, eval_limit: int | None, out: Path,
                 limits: Limits = Limits()) -> tuple[MetricsRecord, Path]:
    """The record of `path` on `target` (accuracy too when a data set is given) and its folder."""
    if not path.is_file():
        raise ArtifactError(str(path), "file not found")
    frontend = ARTIFACT_FRONTENDS.get(path.suffix.lower())
    if frontend is None:
        raise ArtifactError(str(path), f"cannot measure {path.suffix or 'a file without suffix'!r} files (give "
                            + " or ".join(ARTIFACT_FRONTENDS) + ")")
    st = path.stat()
    identity = {"file": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns,
                "target": target.as_dict(), "dataset": dataset, "eval_limit": eval_limit}
    run_dir = out / "measure" / f"{path.stem}-{config_hash(identity)}"
    with atomic_folder(run_dir) as work:
        fields = load_frontend(frontend).measure_artifact(path, target, dataset, eval_limit, work)
        estimate = fields["vela"]
        notes = []
        if estimate.ops_on_cpu:
            notes.append(f"{estimate.ops_on_cpu} op(s) stay on the CPU (Vela cannot place them on the NPU): " + ", ".join(estimate.cpu_ops))
        notes += fields.get("notes", [])
        if not dataset:
            notes.append("no --dataset given: accuracy not measured")
        record = MetricsRecord(
            frontend="measure", techniques=[], options={"file": str(path)}, model=path.stem,
            dataset=dataset or "", target=target, seed=0, epochs=0,
            accuracy=fields["accuracy"], weights=fields.get("weights"), vela=estimate, notes=notes, memory=fields.get("memory"),
            artifacts=[Artifact(kind, str(p.relative_to(work)), p.stat().st_size) for kind, p in fields["artifacts"]],
            versions=tool_versions(), config_hash=config_hash(identity),
        )
        if limits:  # judged, not part of the identity: they change nothing in the file
            judge(record, limits)
        record.write(work)
    return record, run_dir
