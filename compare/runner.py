"""Run the cells of a matrix on Ray: resume, failures recorded, one Ray task per cell.

- A cell whose folder already holds an "ok" record with the same configuration hash is skipped
  (resume after a crash or Ctrl-C); `force` redoes it. Failed cells are retried on the next run.
- A cell that raises is written as a failed MetricsRecord (status "failed", one-line error, the
  traceback in error.log beside it) and the other cells go on. A worker that dies outright (killed,
  segfault, out of memory) gets the same record for the cell it was running; Ray never retries it.
- Each cell is one Ray task (compare/worker.py) in a worker pool of its frontend. It runs in a
  private OUT and sends the finished folder back; only this driver writes into OUT (atomically),
  so a cluster needs no shared file system.
- Lanes: the first cell of each lane (cells sharing one trained float model) runs before the rest
  of its lane; the float model it trained comes back with it and is handed to the lane's other
  cells through Ray's object store, so each lane trains its float model once.
- Warm workers: at most `jobs` cells are in Ray at once, and the cell that takes a finished cell's
  place is of the same frontend when one is ready, so Ray hands it the worker that just became
  idle, with its framework imported and warmed up. Left to Ray's own queue, a freed CPU often went
  to the other frontend, whose new worker paid the imports again while the idle one was killed
  (a quick compare started 7 framework processes for 12 cells; a torch one costs about 10 s).
- Ctrl-C / SIGTERM cancels the running tasks (their private folders are removed, OUT gets no
  partial folder) and re-raises KeyboardInterrupt; finished cells stay recorded for the next call.
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from condition.backend.atomic import write_json_atomic
from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.compare.cluster import ray_session, usable_cores
from condition.compare.matrix import Cell, lanes
from condition.compare.out_lock import hold_out
from condition.compare.transfer import Units, install, is_cache, pack
from condition.compare.worker import CellResult, is_alive, log_path, run_cell, runtime_env, write_failed_record
from condition.errors import ArtifactError
from condition.run import RunConfig

LANE_INDEX = ".float-lanes.json"  # OUT/<this>: lane → its float-cache entries, so a resumed lane reuses them
CANCEL_GRACE_SECONDS = 15.0


@dataclass(frozen=True)
class CellOutcome:
    cell: Cell
    status: str  # "ok", "failed", "flagged" (ran, but its figures cannot be right) or "skipped" (an ok record was already there)
    seconds: float = 0.0
    error: str | None = None
    node: str = ""  # the Ray node id it ran on


class Events(Protocol):
    """What the runner reports while it works (the CLI draws a progress bar from it)."""

    def begin(self, total: int, skipped: int, jobs: int, threads: int, where: str) -> None: ...

    def step(self, cell: Cell, step: str, fraction: float | None) -> None: ...

    def done(self, outcome: CellOutcome) -> None: ...


class NoEvents:
    def begin(self, total: int, skipped: int, jobs: int, threads: int, where: str) -> None:
        return None

    def step(self, cell: Cell, step: str, fraction: float | None) -> None:
        return None

    def done(self, outcome: CellOutcome) -> None:
        return None


def default_jobs(cells: int, cpus: int | None = None) -> int:
    """One single-threaded worker per core (small models train faster as two 1-thread processes
    than as one 2-thread process), never more workers than cells."""
    return max(1, min(cpus or usable_cores(), cells))


def threads_per_worker(jobs: int, cpus: int | None = None) -> int:
    return max(1, (cpus or usable_cores()) // max(1, jobs))


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


def remove_stale_partials(cells: list[Cell]) -> None:
    """Work folders of processes that are gone (a killed compare) are debris: remove them."""
    folders = {c.config.run_dir().parent for c in cells} | {Path(c.config.out) / c.config.frontend / ".float-cache" for c in cells}
    for folder in folders:
        if not folder.is_dir():
            continue
        for p in folder.glob(".*-*"):
            pid = p.name.rsplit("-", 1)[-1]
            if p.is_dir() and pid.isdigit() and not is_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def run_cells(cells: list[Cell], jobs: int | None = None, force: bool = False, events: Events | None = None,
              address: str | None = None, threads: int | None = None) -> list[CellOutcome]:
    """Run every cell that has no ok record yet (all of them with `force`) on Ray; one outcome per cell.

    `address`: an existing Ray cluster (else RAY_ADDRESS, else an embedded Ray for this call).
    `threads`: per cell (default: the CPUs shared out among `jobs` cells at once).
    Ctrl-C / SIGTERM stops the tasks (their unfinished runs leave no folder) and re-raises
    KeyboardInterrupt; finished cells stay recorded, so the next call resumes."""
    if not cells:
        return []
    with hold_out(cells[0].config.out):  # one writer per OUT (re-entrant: the CLI and a search hold it already)
        return _run_cells(cells, jobs, force, events, address, threads)


def _run_cells(cells: list[Cell], jobs: int | None, force: bool, events: Events | None, address: str | None,
               threads: int | None) -> list[CellOutcome]:
    events = events or NoEvents()
    outcomes: dict[str, CellOutcome] = {}
    todo = []
    for cell in cells:
        if not force and is_done(cell.config):
            outcomes[cell.config.hash] = CellOutcome(cell, "skipped")
        else:
            todo.append(cell)
    if not todo:
        events.begin(len(cells), len(cells), 0, 0, "nothing to run")
        for outcome in outcomes.values():
            events.done(outcome)
    else:
        out = Path(todo[0].config.out)
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            with ray_session(out, address) as session:
                jobs = min(jobs or default_jobs(len(todo), session.cpus), len(todo))  # no idle workers, more threads each
                threads = threads or threads_per_worker(jobs, session.cpus)
                where = f"Ray at {session.address}" if session.address else f"embedded Ray, {session.cpus} CPUs"
                events.begin(len(cells), len(cells) - len(todo), jobs, threads, where)
                for outcome in outcomes.values():
                    events.done(outcome)
                remove_stale_partials(todo)
                _Scheduler(todo, threads, jobs, events, outcomes, out).run()
        finally:
            signal.signal(signal.SIGTERM, previous)
    return [outcomes[c.config.hash] for c in cells]


def lane_key(cell: Cell) -> str:
    return json.dumps([str(v) for v in cell.lane])


class LaneCache:
    """Which float-cache entries each lane produced (OUT/.float-lanes.json), and their bytes."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.path = out / LANE_INDEX
        try:
            self.index: dict[str, list[str]] = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.index = {}

    def units(self, key: str) -> Units:
        """The lane's cache entries still present in OUT, packed for a worker."""
        return pack(self.out, [rel for rel in self.index.get(key, []) if (self.out / rel).is_dir()])

    def add(self, key: str, rels: list[str]) -> None:
        if rels:
            self.index[key] = sorted(set(self.index.get(key, [])) | set(rels))
            write_json_atomic(self.path, self.index)


def install_result(out: Path, config: RunConfig, result: CellResult) -> list[str]:
    """Write a task's folders into OUT (atomically) and append its output to the frontend's log;
    returns the float-cache entries it brought."""
    install(out, result.units, keep=is_cache)
    path = log_path(out, config.frontend)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:  # a header per cell, so the log says which cell printed what (also when it printed nothing)
        where = f" on node {result.node} (pid {result.pid})" if result.node else ""
        f.write(f"=== {config.run_dir().relative_to(config.out).as_posix()}: {result.status} in {result.seconds:.1f} s{where} ===\n")
        if result.log.strip():
            f.write(result.log if result.log.endswith("\n") else result.log + "\n")
    return [rel for rel in result.units if is_cache(rel)]


def remote_cell(frontend: str, threads: int) -> Any:
    """The Ray task for one cell: `threads` CPUs, the frontend's own worker pool, never retried
    (a cell that kills its worker is recorded as failed, not run again)."""
    # "DEFAULT" scheduling: a search trial's task must not inherit the trial's 0-CPU placement group
    return _remote_run_cell().options(num_cpus=threads, max_retries=0, runtime_env=runtime_env(frontend, threads),
                                        scheduling_strategy="DEFAULT", name=f"condition-{frontend}")


@functools.cache
def _remote_run_cell() -> Any:
    import ray

    return ray.remote(run_cell)  # made once per process; Ray exports it again to each new session


def describe_task_error(exc: BaseException) -> str:
    """One line for a task that did not return (its worker died, ran out of memory, ...)."""
    import ray

    if isinstance(exc, ray.exceptions.WorkerCrashedError | ray.exceptions.LocalRayletDiedError):
        return "worker process died while running this cell (killed, or crashed)"
    if isinstance(exc, ray.exceptions.OutOfMemoryError):
        return "worker process was killed by Ray: the node ran out of memory"
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


@dataclass
class _Scheduler:
    cells: list[Cell]
    threads: int
    slots: int  # cells in Ray at once (the jobs)
    events: Events
    outcomes: dict[str, CellOutcome]
    out: Path
    waiting: list[int] = field(default_factory=list)  # cell ids not submitted yet, in matrix order
    locked: dict[int, int] = field(default_factory=dict)  # cell id → its lane's first cell, until that is done
    done: set[int] = field(default_factory=set)
    pending: dict[Any, int] = field(default_factory=dict)  # ObjectRef → cell id
    freed: list[str] = field(default_factory=list)  # frontends of finished cells whose worker is idle now

    def __post_init__(self) -> None:
        for lane in lanes(self.cells):
            ids = [self.cells.index(c) for c in lane]
            for i in ids[1:]:
                self.locked[i] = ids[0]
        self.waiting = list(range(len(self.cells)))
        self.lane_cache = LaneCache(self.out)
        self.cache_refs: dict[str, Any] = {}

    def run(self) -> None:
        import ray
        from ray.util.queue import Queue

        self.steps = Queue(actor_options={"num_cpus": 0})
        try:
            while len(self.done) < len(self.cells):
                self._submit()
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.3)
                self._drain()
                for ref in ready:
                    self._collect(ref)
            self._drain()
        except BaseException:
            self._cancel()
            raise

    def _submit(self) -> None:
        """Fill the free slots with ready cells (lane head done, or a head): see `_next`."""
        import ray

        while len(self.pending) < self.slots:
            i = self._next()
            if i is None:
                break
            cell = self.cells[i]
            key = lane_key(cell)
            if key not in self.cache_refs:
                units = self.lane_cache.units(key)
                self.cache_refs[key] = ray.put(units) if units else None
            task = remote_cell(cell.config.frontend, self.threads)
            self.pending[task.remote(i, cell.config, self.threads, self.cache_refs[key], self.steps)] = i
            self.waiting.remove(i)
        self.freed.clear()  # a freed worker no cell of its frontend could use goes back to Ray

    def _next(self) -> int | None:
        """The ready cell to run next: one of the frontend whose worker was freed first (a warm worker
        for it), else the first in matrix order; lane heads before the rest (they unlock their lanes)."""
        ready = [i for i in self.waiting if self.locked.get(i) is None or self.locked[i] in self.done]
        if not ready:
            return None
        ready.sort(key=lambda i: (i in self.locked, i))
        while self.freed:
            frontend = self.freed.pop(0)
            same = [i for i in ready if self.cells[i].config.frontend == frontend]
            if same:
                return same[0]
        return ready[0]

    def _drain(self) -> None:
        try:
            n = self.steps.qsize()
            messages = self.steps.get_nowait_batch(n) if n else []
        except Exception:  # noqa: BLE001 — progress is best effort
            return
        for msg in messages:
            cell = self.cells[msg[1]]
            if msg[1] in self.done:
                continue
            if msg[0] == "start":
                self.events.step(cell, "start", None)
            elif msg[0] == "step":
                self.events.step(cell, msg[2], msg[3])

    def _collect(self, ref: Any) -> None:
        import ray

        i = self.pending.pop(ref)
        cell = self.cells[i]
        self.freed.append(cell.config.frontend)
        try:
            result: CellResult = ray.get(ref)
        except (KeyboardInterrupt, ray.exceptions.TaskCancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 — the task did not return: record the cell as failed
            error = describe_task_error(exc)
            write_failed_record(cell.config, error)
            self._finish(i, CellOutcome(cell, "failed", 0.0, error))
            return
        rels = install_result(self.out, cell.config, result)
        if rels:
            key = lane_key(cell)
            self.lane_cache.add(key, rels)
            self.cache_refs.pop(key, None)  # the lane's next cells get the new entries
        self._finish(i, CellOutcome(cell, result.status, round(result.seconds, 1), result.error, result.node))

    def _finish(self, i: int, outcome: CellOutcome) -> None:
        self.done.add(i)
        self.outcomes[outcome.cell.config.hash] = outcome
        self.events.done(outcome)

    def _cancel(self) -> None:
        """Interrupt the running tasks so they remove their private folders; force what does not stop."""
        import ray

        refs = list(self.pending)
        for ref in refs:
            ray.cancel(ref)  # KeyboardInterrupt inside the task; its `finally` cleans up
        deadline = time.monotonic() + CANCEL_GRACE_SECONDS
        while refs and time.monotonic() < deadline:
            _, refs = ray.wait(refs, num_returns=len(refs), timeout=0.5)
        for ref in refs:
            ray.cancel(ref, force=True)
