"""What every run does around its frontend-specific work: a private work folder renamed into
place only on success (never a half-written result), timed steps reported to the progress bar,
artifact sizes, and the common fields of the metrics record.

    with RunRecorder(config, progress) as rec:
        with rec.step("train"):
            ...
        record = rec.finish(accuracy=[...], weights=..., vela=..., artifacts=[rec.artifact("tflite", path)])
"""
from __future__ import annotations

import contextlib
import shutil
import time
from pathlib import Path
from typing import Any, Iterator

from condition.backend.atomic import new_work_folder, publish_folder
from condition.backend.metrics import Artifact, FvpMeasurement, MetricsRecord, tool_versions
from condition.backend.budget import judge
from condition.backend.plausibility import problems
from condition.datasets import dataset_key
from condition.run import Progress, RunConfig, no_progress
from condition.techniques import config_options


class RunRecorder:
    def __init__(self, config: RunConfig, progress: Progress = no_progress) -> None:
        self.config = config
        self.progress = progress
        self.run_dir = config.run_dir()
        self.work_dir: Path  # the private folder beside run_dir, made on entering the `with`
        self.step_seconds: dict[str, float] = {}
        self.notes: list[str] = []
        self._start = time.perf_counter()

    def __enter__(self) -> "RunRecorder":
        self.work_dir = new_work_folder(self.run_dir)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        # On success finish() already moved the folder; anything left is a failed run's debris,
        # and so are parent folders this run created and left empty.
        shutil.rmtree(self.work_dir, ignore_errors=True)
        out = Path(self.config.out).resolve()
        parent = self.work_dir.parent.resolve()
        while parent != out and out in parent.parents:
            try:
                parent.rmdir()  # only succeeds when empty
            except OSError:
                break
            parent = parent.parent

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Time a step and show it on the progress bar; the time goes into `step_seconds`."""
        self.progress(name, 0.0)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.step_seconds[name] = round(self.step_seconds.get(name, 0.0) + time.perf_counter() - start, 3)
            self.progress(name, 1.0)

    def path(self, name: str) -> Path:
        """Where a file of this run goes while the run is in progress."""
        return self.work_dir / name

    def artifact(self, kind: str, path: str | Path) -> Artifact:
        path = Path(path)
        return Artifact(kind=kind, path=str(path.relative_to(self.work_dir)) if path.is_relative_to(self.work_dir) else str(path),
                        bytes=path.stat().st_size)

    def run_fvp(self, artifact: Path) -> FvpMeasurement | None:
        """Measure the compiled artifact on a bring-your-own FVP; a missing FVP is a note, not a failure."""
        from condition.backend.fvp import run_artifact_on_fvp

        with self.step("fvp"):
            measurement, note = run_artifact_on_fvp(artifact, self.config.target, self.config.fvp, self.path("fvp"))
        if note:
            self.note(note)
        return measurement

    def note(self, text: str) -> None:
        self.notes.append(text)

    def finish(self, classes: int = 0, **fields: Any) -> MetricsRecord:
        """Build the record, say what in it cannot be right (`classes`: the data set's, for the
        near-chance check), write it, and move the finished folder into place atomically."""
        self.step_seconds["total"] = round(time.perf_counter() - self._start, 3)
        record = record_for(self.config, step_seconds=dict(self.step_seconds), notes=list(self.notes), **fields)
        record.problems = problems(record.accuracy, record.weights, record.stage_weights, record.options, classes)
        if self.config.limits:
            judge(record, self.config.limits)
        record.write(self.work_dir)
        publish_folder(self.work_dir, self.run_dir)
        return record


def record_for(config: RunConfig, **fields: Any) -> MetricsRecord:
    """A metrics record with the fields every run of `config` shares (ok or failed)."""
    return MetricsRecord(
        frontend=config.frontend,
        techniques=config.techniques,
        options={c.name: config_options(c) for c in config.chain},
        model=config.model,
        dataset=dataset_key(config.dataset, config.test_split, config.image_size),  # e.g. 'flowers[image_size=32x32]'
        target=config.target,
        seed=config.seed,
        epochs=config.epochs,
        versions=tool_versions(),
        config_hash=config.hash,
        **fields,
    )
