"""Run the cells of a matrix: resume, failures recorded, cells spread over worker processes.

- A cell whose folder already holds an "ok" record with the same configuration hash is skipped
  (resume after a crash or Ctrl-C); `force` redoes it. Failed cells are retried on the next run.
- A cell that raises is written as a failed MetricsRecord (status "failed", one-line error, the
  traceback in error.log beside it) and the other cells go on. A worker that dies outright (killed,
  segfault) gets the same record for the cell it was running.
- Scheduling: the first cell of each lane (cells sharing one trained float model) runs before the
  rest of its lane, so the frontend trains that float model once and the others load it from the
  frontend's cache on disk. After that any free worker takes any ready cell, preferring its own
  frontend; a worker whose frontend has nothing left makes room for one of the other frontend, so
  a short TF lane does not leave a core idle while the torch lane is still long.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import shutil
import signal
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.compare.matrix import Cell, lanes
from condition.compare.worker import log_path, worker_main, write_failed_record
from condition.errors import ArtifactError
from condition.run import RunConfig


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


def default_jobs(cells: int) -> int:
    """One single-threaded worker per core (small models train faster as two 1-thread processes
    than as one 2-thread process), never more workers than cells."""
    return max(1, min(usable_cores(), cells))


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


def run_cells(cells: list[Cell], jobs: int | None = None, force: bool = False, events: Events | None = None) -> list[CellOutcome]:
    """Run every cell that has no ok record yet (all of them with `force`); one outcome per cell.

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
    jobs = min(jobs or default_jobs(len(todo)), max(1, len(todo)))  # no idle workers, more threads each
    events.begin(len(cells), len(cells) - len(todo), jobs)
    for outcome in outcomes.values():
        events.done(outcome)
    if todo:
        remove_stale_partials(todo)
        _Scheduler(todo, jobs, events, outcomes).run()
    return [outcomes[c.config.hash] for c in cells]


@dataclass
class _Worker:
    frontend: str
    process: Any
    inbox: Any
    busy: int | None = None  # cell id it is running
    stopping: bool = False


@dataclass
class _Scheduler:
    cells: list[Cell]
    jobs: int
    events: Events
    outcomes: dict[str, CellOutcome]
    waiting: list[int] = field(default_factory=list)  # cell ids not handed out yet, in matrix order
    locked: dict[int, int] = field(default_factory=dict)  # cell id → its lane's first cell, until that is done
    done: set[int] = field(default_factory=set)
    workers: list[_Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ctx = mp.get_context("spawn")  # never fork a process that may hold framework threads
        self.outbox = self.ctx.Queue()
        index = {id(c): i for i, c in enumerate(self.cells)}
        for lane in lanes(self.cells):
            ids = [index[id(c)] for c in lane]
            for i in ids[1:]:
                self.locked[i] = ids[0]
        self.waiting = list(range(len(self.cells)))
        self.heads = {i for i in self.waiting if i not in self.locked}

    def run(self) -> None:
        previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while len(self.done) < len(self.cells):
                self._assign()
                try:
                    self._handle(self.outbox.get(timeout=0.5))
                except queue_mod.Empty:
                    pass
                self._reap()
            for w in self.workers:
                w.inbox.put(None)
            for w in self.workers:
                w.process.join(10)
        except BaseException:
            self._stop()
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            self.outbox.close()

    def _ready(self) -> list[int]:
        return [i for i in self.waiting if self.locked.get(i) is None or self.locked[i] in self.done]

    def _assign(self) -> None:
        ready = self._ready()
        for w in self.workers:  # idle workers first take cells of their own frontend
            if w.busy is None and not w.stopping:
                pick = next((i for i in ready if self.cells[i].config.frontend == w.frontend), None)
                if pick is not None:
                    self._give(w, pick)
                    ready.remove(pick)
        for w in self.workers:  # then idle workers with nothing of theirs left make room
            if w.busy is None and not w.stopping:
                mine_left = any(self.cells[i].config.frontend == w.frontend for i in self.waiting)
                if not mine_left or (ready and len(self.workers) >= self.jobs):
                    w.stopping = True
                    w.inbox.put(None)
        while ready and len(self.workers) < self.jobs:
            pick = self._choose(ready)
            w = self._spawn(self.cells[pick].config.frontend)
            self._give(w, pick)
            ready.remove(pick)

    def _choose(self, ready: list[int]) -> int:
        """Lane heads first (they unlock their lanes), then the frontend with the most left to do."""
        heads = [i for i in ready if i in self.heads]
        if heads:
            return heads[0]
        backlog = {f: sum(1 for i in self.waiting if self.cells[i].config.frontend == f) for f in {self.cells[i].config.frontend for i in ready}}
        return max(ready, key=lambda i: (backlog[self.cells[i].config.frontend], -i))

    def _spawn(self, frontend: str) -> _Worker:
        inbox = self.ctx.Queue()
        out = self.cells[0].config.out
        process = self.ctx.Process(target=worker_main, name=f"condition-compare-{frontend}",
                                   args=(frontend, inbox, self.outbox, threads_per_worker(self.jobs), os.getpid(), str(log_path(out, frontend))))
        process.start()
        worker = _Worker(frontend, process, inbox)
        self.workers.append(worker)
        return worker

    def _give(self, w: _Worker, cell_id: int) -> None:
        w.busy = cell_id
        self.waiting.remove(cell_id)
        w.inbox.put((cell_id, self.cells[cell_id].config))

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind, cell_id = msg[0], msg[1]
        cell = self.cells[cell_id]
        if kind == "start":
            self.events.step(cell, "start", None)
        elif kind == "step":
            self.events.step(cell, msg[2], msg[3])
        elif kind == "done" and cell_id not in self.done:
            for w in self.workers:
                if w.busy == cell_id:
                    w.busy = None
            self._finish(CellOutcome(cell, msg[2], round(msg[4], 1), msg[3]), cell_id)

    def _finish(self, outcome: CellOutcome, cell_id: int) -> None:
        self.done.add(cell_id)
        self.outcomes[outcome.cell.config.hash] = outcome
        self.events.done(outcome)

    def _reap(self) -> None:
        """Remove exited workers; a cell a worker died in is recorded as failed."""
        for w in list(self.workers):
            if w.process.exitcode is None:
                continue
            self._drain()
            w.process.join()
            self.workers.remove(w)
            if w.busy is not None and w.busy not in self.done:
                code = w.process.exitcode
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                error = f"worker process died while running this cell ({how})"
                cell = self.cells[w.busy]
                write_failed_record(cell.config, error)
                self._finish(CellOutcome(cell, "failed", 0.0, error), w.busy)

    def _drain(self) -> None:
        while True:
            try:
                self._handle(self.outbox.get(timeout=0.05))
            except queue_mod.Empty:
                return

    def _stop(self) -> None:
        """Interrupt the workers so their recorders clean up, then make sure they are gone."""
        for w in self.workers:
            if w.process.exitcode is None:
                w.process.terminate()  # SIGTERM → KeyboardInterrupt inside the worker
        deadline = time.monotonic() + 15
        for w in self.workers:
            w.process.join(max(0.1, deadline - time.monotonic()))
            if w.process.exitcode is None:
                w.process.kill()
                w.process.join()
