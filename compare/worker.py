"""The worker process side of the runner: one spawned process per frontend slot that runs the
cells it is handed, one after the other, and reports start / step / done on a queue.

A worker only ever runs cells of one frontend, so TensorFlow and torch never share a process and
each worker imports its framework once. Thread pools are sized from the environment before the
framework loads, so the workers together use each core once.
"""
from __future__ import annotations

import os
import queue as queue_mod
import re
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from condition.backend.metrics import MetricsRecord
from condition.errors import ConditionError
from condition.recorder import record_for, replace_folder
from condition.run import RunConfig

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


def worker_main(frontend: str, inbox: Any, outbox: Any, threads: int, parent: int, log_path: str) -> None:
    """Entry point of a spawned worker: take (cell id, RunConfig) from `inbox` until None.

    The frameworks' own output goes to the log file, not over the progress bar. SIGTERM (sent by
    the runner on Ctrl-C) becomes KeyboardInterrupt so the run's recorder removes its work folder."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    set_threads(threads)
    _redirect_output(Path(log_path))
    try:
        while True:
            try:
                item = inbox.get(timeout=1.0)
            except queue_mod.Empty:
                if os.getppid() != parent:  # the compare that started us is gone: do not run on alone
                    return
                continue
            if item is None:
                return
            cell_id, config = item
            _run_cell(cell_id, config, outbox)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _run_cell(cell_id: int, config: RunConfig, outbox: Any) -> None:
    from condition.run import run_config

    outbox.put(("start", cell_id))
    start = time.perf_counter()
    last = [0.0, ""]

    def progress(step: str, fraction: float | None = None) -> None:
        now = time.perf_counter()
        if step != last[1] or now - last[0] > 0.5 or fraction in (0.0, 1.0):
            last[0], last[1] = now, step
            outbox.put(("step", cell_id, step, fraction))

    try:
        record = run_config(config, progress)
        status, error = record.status, record.error
    except Exception as exc:  # noqa: BLE001 — any failure of one cell is recorded; the others go on
        status, error = "failed", describe(exc)
        print(traceback.format_exc(), file=sys.stderr)
        write_failed_record(config, error, traceback.format_exc(), time.perf_counter() - start)
    outbox.put(("done", cell_id, status, error, time.perf_counter() - start))


def set_threads(threads: int) -> None:
    """Before tensorflow/torch are imported: both size their thread pools from these at start."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ["CONDITION_TOSA_WORKERS"] = str(threads)  # torch's TOSA-reference evaluation pool
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _redirect_output(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log


def log_path(out: str | Path, frontend: str) -> Path:
    """OUT/logs/<frontend>.log: what the frameworks printed, and the tracebacks of failed cells."""
    return Path(out) / "logs" / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', frontend)}.log"


def describe(exc: BaseException) -> str:
    if isinstance(exc, ConditionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def one_line(text: str, limit: int = 400) -> str:
    """Records keep a one-line error; the full traceback is in the cell's error.log."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def write_failed_record(config: RunConfig, error: str, details: str = "", seconds: float = 0.0) -> MetricsRecord:
    """Replace the cell's folder with one holding a failed record (and the traceback, if any)."""
    record = record_for(config, status="failed", error=one_line(error), step_seconds={"total": round(seconds, 3)})
    run_dir = config.run_dir()
    tmp = run_dir.parent / f".{run_dir.name}.failed-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record.write(tmp)
    if details:
        (tmp / "error.log").write_text(details)
    replace_folder(tmp, run_dir)
    return record
