"""The worker side of the runner: the body of one Ray task, which runs one cell (or one search
trial) and sends the finished run folder back as bytes with its status.

The task runs the cell in a private OUT on the worker's own disk, so a cluster needs no shared file
system: the float model its lane trained (or was handed) and the run folder travel as tars
(compare/transfer.py) and the driver writes them into the real OUT. Tasks of one frontend share a
Ray worker pool of their own (the runner gives each frontend its own runtime env), so TensorFlow and
torch never share a process and each worker imports its framework once. Training computes with the
fixed COMPUTE_THREADS of every run (condition/threads.py), so a cell gives the same bytes with any
--jobs; the CPUs a cell was given size its int8 evaluation pool and the threads of a model whose
training cannot depend on them (a Linear/ReLU MLP).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from condition.backend.atomic import atomic_folder
from condition.backend.metrics import MetricsRecord
from condition.compare.transfer import Units, float_cache_folders, install, pack
from condition.errors import ConditionError, one_line
from condition.recorder import record_for
from condition.run import RunConfig
from condition.threads import RUN_CORES_ENV, pin_thread_env

CELL_TMP_ENV = "CONDITION_CELL_TMP"  # where tasks make their private OUT (default: the system temp dir)
LOG_LIMIT = 200_000  # characters of framework output sent back per cell


@dataclass(frozen=True)
class CellResult:
    """What a task sends back: the outcome, the run folder and any float-cache entry it trained."""

    cell_id: int
    status: str  # "ok" or "failed"
    error: str | None
    seconds: float
    units: Units  # folder relative to OUT → tar (compare/transfer.py)
    log: str  # what the frameworks printed while the cell ran
    node: str = ""  # the Ray node id the cell ran on (OUT/logs/<frontend>.log names it per cell)
    pid: int = 0  # the worker process


def runtime_env(frontend: str, threads: int) -> dict[str, Any]:
    """A Ray runtime env per (frontend, threads): Ray keeps one worker pool per runtime env, so a
    worker process only ever runs one framework with one thread setting, set by `set_threads` in its
    first task before the framework is imported."""
    return {"env_vars": {"CONDITION_WORKER_FRONTEND": frontend, "CONDITION_WORKER_THREADS": str(threads)}}


def run_cell(cell_id: int, config: RunConfig, threads: int, cache: Units | None = None, steps: Any = None) -> CellResult:
    """Run `config` in a private OUT; `cache` = float-cache entries to start from, `steps` = a queue
    (ray.util.queue.Queue) for ("start"|"step", cell id, …) messages. Never raises for a failing
    run: the failure is the result (a failed record in the run folder)."""
    from condition.run import run_config

    set_threads(threads)
    private = _private_out()
    try:
        local = dataclasses.replace(config, out=private)
        if cache:
            install(private, cache)
        before = set(float_cache_folders(private))
        _put(steps, ("start", cell_id))
        start = time.perf_counter()
        last = [0.0, ""]

        def progress(step: str, fraction: float | None = None) -> None:
            now = time.perf_counter()
            if step != last[1] or now - last[0] > 0.5 or fraction in (0.0, 1.0):
                last[0], last[1] = now, step
                _put(steps, ("step", cell_id, step, fraction))

        with _captured_output(private / ".output.log") as log:
            try:
                record = run_config(local, progress)
                status, error = record.verdict, record.reason  # flagged: figures that cannot be right, kept, not a result
            except Exception as exc:  # noqa: BLE001 — any failure of one cell is recorded; the others go on
                status, error = "failed", describe(exc)
                print(traceback.format_exc(), file=sys.stderr)
                write_failed_record(local, error, traceback.format_exc(), time.perf_counter() - start)
        seconds = time.perf_counter() - start
        new_cache = [f for f in float_cache_folders(private) if f not in before]
        units = pack(private, [local.run_dir().relative_to(private).as_posix(), *new_cache])
        return CellResult(cell_id, status, error, seconds, units, log.read_text(errors="replace")[-LOG_LIMIT:], node_id(), os.getpid())
    finally:
        shutil.rmtree(private, ignore_errors=True)


def node_id() -> str:
    """This process's Ray node ("" outside Ray, e.g. a cell run in-process by a test)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:  # noqa: BLE001 — which node ran a cell is information, never a failure
        return ""


def _put(queue: Any, message: tuple[Any, ...]) -> None:
    if queue is not None:
        with contextlib.suppress(Exception):  # progress is best effort; a full or gone queue never fails a cell
            queue.put_nowait(message)


def _private_out() -> Path:
    """A fresh folder for one cell; folders of cells whose process is gone (killed) are removed."""
    base = Path(os.environ.get(CELL_TMP_ENV) or tempfile.gettempdir()) / "condition-cells"
    base.mkdir(parents=True, exist_ok=True)
    for p in base.glob("*-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not is_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)
    path = base / f"{uuid.uuid4().hex[:12]}-{os.getpid()}"
    path.mkdir()
    return path


def is_alive(pid: int) -> bool:
    """Is the process that owns a private folder still running (else its folder is debris)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def _captured_output(path: Path) -> Iterator[Path]:
    """The frameworks' own output (C++ logs too, hence file descriptors) goes to `path`, not to
    Ray's worker log; restored afterwards because the worker process runs further cells."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    stdout, stderr = sys.stdout, sys.stderr
    with open(path, "a", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = sys.stderr = log
        try:
            yield path
        finally:
            with contextlib.suppress(Exception):
                log.flush()
            sys.stdout, sys.stderr = stdout, stderr
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def set_threads(threads: int) -> None:
    """Before tensorflow/torch are imported. Training and calibration compute with the run's fixed
    COMPUTE_THREADS whatever the cell was given (condition/threads.py: the bytes depend on it); the
    cell's CPUs go to the int8 evaluation pool, whose results do not, and to the float training of a
    model whose bits cannot depend on them (frontends/torch/train.py `thread_independent`)."""
    pin_thread_env()
    os.environ[RUN_CORES_ENV] = str(threads)  # the int8 evaluation pool and a thread-independent model's training
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def log_path(out: str | Path, frontend: str) -> Path:
    """OUT/logs/<frontend>.log: what the frameworks printed, and the tracebacks of failed cells."""
    return Path(out) / "logs" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', frontend)}.log"


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConditionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def write_failed_record(config: RunConfig, error: str, details: str = "", seconds: float = 0.0) -> MetricsRecord:
    """Replace the cell's folder with one holding a failed record (and the traceback, if any)."""
    # Records keep a one-line error; the full traceback is in the cell's error.log.
    record = record_for(config, status="failed", error=one_line(error, limit=400), step_seconds={"total": round(seconds, 3)})
    with atomic_folder(config.run_dir()) as folder:
        record.write(folder)
        if details:
            (folder / "error.log").write_text(details)
    return record
