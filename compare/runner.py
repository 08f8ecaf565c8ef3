"""Run the cells of a matrix: resume, failures recorded, lanes in parallel worker processes.

- A cell whose folder already holds an "ok" record with the same configuration hash is skipped
  (resume after a crash or Ctrl-C); `force` redoes it. Failed cells are retried on the next run.
- A cell that raises is written as a failed MetricsRecord (status "failed", one-line error, the
  traceback in error.log beside it) and the other cells go on. A worker that dies outright (killed,
  segfault) gets the same record for the cell it was running; the rest of its lane is restarted.
- Each lane (cells sharing one trained float model) runs in its own spawned process, so the
  frontend trains the float model once, each process imports one framework, and TensorFlow and
  torch never share a process. Thread pools are sized so the workers together use the cores once.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import re
import shutil
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from condition.backend.metrics import RECORD_NAME, MetricsRecord, tool_versions
from condition.compare.matrix import Cell, lanes
from condition.errors import ArtifactError
from condition.run import RunConfig

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: str  # "ok", "failed" or "skipped" (an ok record was already there)
    seconds: float = 0.0
    error: str | None = None


class Events(Protocol):
    """What the runner reports while it works (the CLI draws a progress bar from it)."""

    def begin(self, total: int, skipped: int, jobs: int) -> None: ...

    def step(self, cell: Cell, step: str, fraction: float | None) -> None: ...

    def done(self, outcome: CellOutcome) -> None: ...


class NoEvents:
    def begin(self, total: int, skipped: int, jobs: int) -> None:
        return None

    def step(self, cell: Cell, step: str, fraction: float | None) -> None:
        return None

    def done(self, outcome: CellOutcome) -> None:
        return None


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_jobs(n_lanes: int) -> int:
    """One worker per core, never more than there are lanes to run."""
    return max(1, min(usable_cores(), n_lanes))


def threads_per_worker(jobs: int) -> int:
    return max(1, usable_cores() // max(1, jobs))


def existing_record(config: RunConfig) -> MetricsRecord | None:
    path = config.run_dir() / RECORD_NAME
    if not path.is_file():
        return None
    try:
        return MetricsRecord.read(path)
    except ArtifactError:  # unreadable or other schema: run the cell again
        return None


def is_done(config: RunConfig) -> bool:
    record = existing_record(config)
    return record is not None and record.status == "ok" and record.config_hash == config.hash


def write_failed_record(config: RunConfig, error: str, details: str = "", seconds: float = 0.0) -> MetricsRecord:
    """Replace the cell's folder with one holding a failed record (and the traceback, if any)."""
    record = MetricsRecord(
        frontend=config.frontend,
        techniques=config.techniques,
        options={s.technique: dict(s.options) for s in config.chain},
        model=config.model,
        dataset=config.dataset,
        target=config.target.as_dict(),
        seed=config.seed,
        epochs=config.epochs,
        status="failed",
        error=one_line(error),
        step_seconds={"total": round(seconds, 3)},
        versions=tool_versions(),
        config_hash=config.hash,
    )
    run_dir = config.run_dir()
    tmp = run_dir.parent / f".{run_dir.name}.failed-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    record.write(tmp)
    if details:
        (tmp / "error.log").write_text(details)
    if run_dir.exists():
        old = run_dir.parent / f".{run_dir.name}.old-{os.getpid()}"
        os.replace(run_dir, old)
        shutil.rmtree(old, ignore_errors=True)
    os.replace(tmp, run_dir)
    return record


def remove_stale_partials(cells: list[Cell]) -> None:
    """Work folders of runs whose process is gone (a killed compare) are debris: remove them."""
    for folder in {c.config.run_dir().parent for c in cells}:
        if not folder.is_dir():
            continue
        for p in folder.glob(".*-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if p.is_dir() and pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- the worker process ---------------------------------------------------------------------

def _worker(lane_id: int, configs: list[RunConfig], events: Any, threads: int, parent: int, log_path: str) -> None:
    """Run one lane's cells in order; report start/step/done through the queue.

    The frameworks' own chatter goes to the lane's log file, not over the progress bar."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # terminate → KeyboardInterrupt → clean up
    _set_threads(threads)
    _redirect_output(Path(log_path))
    try:
        _run_lane(lane_id, configs, events, parent)
    except KeyboardInterrupt:
        raise SystemExit(130) from None


def _run_lane(lane_id: int, configs: list[RunConfig], events: Any, parent: int) -> None:
    from condition.run import run_config

    for index, config in enumerate(configs):
        if os.getppid() != parent:  # the compare that started us is gone: stop, do not run on alone
            return
        events.put(("start", lane_id, index))
        start = time.perf_counter()
        last = [0.0, ""]

        def progress(step: str, fraction: float | None = None, _i: int = index) -> None:
            now = time.perf_counter()
            if step != last[1] or now - last[0] > 0.5 or fraction in (0.0, 1.0):
                last[0], last[1] = now, step
                events.put(("step", lane_id, _i, step, fraction))

        try:
            record = run_config(config, progress)
            status, error = record.status, record.error
        except Exception as exc:  # noqa: BLE001 — any failure of one cell is recorded; the lane goes on
            status, error = "failed", _describe(exc)
            write_failed_record(config, error, traceback.format_exc(), time.perf_counter() - start)
        events.put(("done", lane_id, index, status, error, time.perf_counter() - start))


def _set_threads(threads: int) -> None:
    """Before tensorflow/torch are imported: both size their thread pools from these at start."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    os.environ["TF_NUM_INTEROP_THREADS"] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _redirect_output(path: Path) -> None:
    import sys

    path.parent.mkdir(parents=True, exist_ok=True)
    log = open(path, "a", buffering=1)
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    sys.stdout = sys.stderr = log


def lane_log_path(cell: Cell) -> Path:
    """OUT/logs/<frontend>-<model>-<data set>-seed<N>.log: what a worker's frameworks printed."""
    c = cell.config
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{c.frontend}-{Path(c.model).stem}-{Path(c.dataset).stem}-seed{c.seed}")
    return Path(c.out) / "logs" / f"{name}.log"


def one_line(text: str, limit: int = 400) -> str:
    """Records keep a one-line error; the full traceback is in the cell's error.log."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _describe(exc: BaseException) -> str:
    from condition.errors import ConditionError

    if isinstance(exc, ConditionError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# ---- the scheduler ----------------------------------------------------------------------------

@dataclass
class _Lane:
    cells: list[Cell]
    process: Any = None
    current: int | None = None  # index of the cell running now
    finished: int = 0  # cells reported done
    started: float = 0.0


def run_cells(cells: list[Cell], jobs: int | None = None, force: bool = False, events: Events | None = None) -> list[CellOutcome]:
    """Run every cell that has no ok record yet (all of them with `force`); return one outcome per cell.

    Ctrl-C / SIGTERM stops the workers (their unfinished runs leave no folder) and re-raises
    KeyboardInterrupt; finished cells stay recorded, so the next call resumes."""
    events = events or NoEvents()
    outcomes: dict[str, CellOutcome] = {}
    todo = []
    for cell in cells:
        if not force and is_done(cell.config):
            outcomes[cell.config.hash] = CellOutcome(cell, "skipped")
        else:
            todo.append(cell)
    pending = lanes(todo)
    jobs = jobs or default_jobs(len(pending))
    events.begin(len(cells), len(cells) - len(todo), jobs)
    for outcome in outcomes.values():
        events.done(outcome)
    if todo:
        remove_stale_partials(todo)
        _schedule(pending, jobs, events, outcomes)
    return [outcomes[c.config.hash] for c in cells]


def _schedule(pending: list[list[Cell]], jobs: int, events: Events, outcomes: dict[str, CellOutcome]) -> None:
    ctx = mp.get_context("spawn")  # never fork a process that may hold framework threads
    messages = ctx.Queue()
    running: dict[int, _Lane] = {}
    queue_lanes = list(pending)
    next_id = 0
    threads = threads_per_worker(jobs)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while queue_lanes or running:
            while queue_lanes and len(running) < jobs:
                lane = _Lane(queue_lanes.pop(0))
                lane.process = ctx.Process(target=_worker, args=(next_id, [c.config for c in lane.cells], messages, threads, os.getpid(),
                                                 str(lane_log_path(lane.cells[0]))),
                                           name=f"condition-compare-{next_id}")
                lane.process.start()
                lane.started = time.perf_counter()
                running[next_id] = lane
                next_id += 1
            try:
                _handle(messages.get(timeout=0.5), running, events, outcomes)
            except queue_mod.Empty:
                pass
            for lane_id, lane in list(running.items()):
                if lane.process.exitcode is None:
                    continue
                _drain(messages, running, events, outcomes)
                rest = _reap(lane, events, outcomes)
                if rest:
                    queue_lanes.insert(0, rest)
                del running[lane_id]
    except BaseException:
        _stop(running)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        messages.close()


def _handle(msg: tuple[Any, ...], running: dict[int, _Lane], events: Events, outcomes: dict[str, CellOutcome]) -> None:
    kind, lane_id, index = msg[0], msg[1], msg[2]
    lane = running.get(lane_id)
    if lane is None:
        return
    cell = lane.cells[index]
    if kind == "start":
        lane.current = index
        events.step(cell, "start", None)
    elif kind == "step":
        events.step(cell, msg[3], msg[4])
    elif kind == "done":
        lane.current = None
        lane.finished = index + 1
        outcome = CellOutcome(cell, msg[3], round(msg[5], 1), msg[4])
        outcomes[cell.config.hash] = outcome
        events.done(outcome)


def _drain(messages: Any, running: dict[int, _Lane], events: Events, outcomes: dict[str, CellOutcome]) -> None:
    while True:
        try:
            _handle(messages.get(timeout=0.05), running, events, outcomes)
        except queue_mod.Empty:
            return


def _reap(lane: _Lane, events: Events, outcomes: dict[str, CellOutcome]) -> list[Cell]:
    """A worker has exited: record a crash of the cell it was running; return the cells it never ran."""
    lane.process.join()
    code = lane.process.exitcode
    if lane.finished >= len(lane.cells):
        return []
    if lane.current is None:
        if code == 0:  # stopped on purpose before its next cell
            return []
        lane.current = lane.finished  # died before it could report the start
    cell = lane.cells[lane.current]
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    error = f"worker process died while running this cell ({how})"
    write_failed_record(cell.config, error)
    outcome = CellOutcome(cell, "failed", 0.0, error)
    outcomes[cell.config.hash] = outcome
    events.done(outcome)
    return lane.cells[lane.current + 1:]


def _stop(running: dict[int, _Lane]) -> None:
    """Interrupt the workers so their recorders clean up, then make sure they are gone."""
    for lane in running.values():
        if lane.process.exitcode is None:
            lane.process.terminate()  # SIGTERM → KeyboardInterrupt inside the worker
    deadline = time.monotonic() + 15
    for lane in running.values():
        lane.process.join(max(0.1, deadline - time.monotonic()))
        if lane.process.exitcode is None:
            lane.process.kill()
            lane.process.join()
