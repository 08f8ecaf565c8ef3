"""`condition search`: Ray Tune drives Optuna's multi-objective TPE sampler over technique chains
(compare/search_space.py) for each frontend, to find the fewest total cycles and encoded weight
bytes whose int8 accuracy stays within `max_accuracy_drop` points of the dense int8 model trained
for the same total epochs.

How a search runs (all on Ray, compare/cluster.py):
1. References: the dense post-training-quant model of each frontend at the search's float epochs,
   through the compare runner; it trains the float model every trial starts from (its float-cache
   entry is handed to each trial's task, so a cluster needs no shared file system). Its figures are
   the "dense reference" every trial is shown against (and ranked by), beside the trial's
   same-epochs baseline (the accuracy constraint's). Beside the references, the seed points'
   baseline: the float cache keeps every epoch of its training, so each shorter baseline's task is
   handed its float model (float_cache_units) instead of training it.
2. Tune: one Optuna study per frontend (`PerFrontendSearch`) over the space of the Target's NPU
   (search_space.space_for), trials alternating between frontends; each study evaluates the seed
   points first (search_space.SEED_POINTS, which are TPE's start-up phase), then TPE proposes.
   A trial is a light coordinator pinned to the driver's node (0 CPUs); it makes sure the trial's
   baseline exists (run once per total-epoch count, cached by configuration hash like any run), runs
   the trial as an ordinary Ray task (one CPU-bound cell, compare/worker.py; submitted through the
   search's CellSubmitter actor, so it runs in the same warm workers as the references) and writes
   both run folders into OUT. Only the driver's node writes OUT.
3. Constraint: accuracy ≥ baseline − drop. Optuna's constrained TPE gets `constraint` = (baseline −
   drop) − accuracy (≤ 0 is feasible) and ranks every infeasible trial below every feasible one.
   A trial is stopped before it trains when a finished trial of the same frontend that is no more
   aggressive (same structure, schedule and quantizer; no higher sparsity, no fewer clusters, no more
   epochs of any kind) already missed this trial's requirement by more than STOP_MARGIN: pruning
   harder and training less does not recover accuracy. Stopped trials are told to Optuna as pruned.
4. OUT/search.json lists every trial (the ledger); resume loads it, tells Optuna the finished trials
   and runs only the remaining ones; a trial whose run folder exists (same hash) is not run again.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import fcntl
import functools
import json
import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condition.backend.atomic import write_json_atomic
from condition.backend.budget import Limits, Needs, excess, misfits_of, needs
from condition.backend.metrics import MetricsRecord
from condition.compare.matrix import Cell
from condition.compare.search_space import (SEED_POINTS, baseline_config, define_space, describe, distributions, in_space,
                                            normalise, reference_config, seed_baseline_config, space_for, trial_config)
from condition.errors import ArtifactError, ConfigError
from condition.run import RunConfig

MANIFEST_NAME = "search.json"
MANIFEST_VERSION = 1
METRICS = ["cycles", "weights"]
MODES = ["min", "min"]
STOP_MARGIN = 0.01  # a no-more-aggressive trial must have missed by more than one point before we extrapolate
# TPE samples at random until this many trials of the study have finished: the seed points
# (search_space.SEED_POINTS) are that start-up phase, so TPE proposes from the next trial on.
STARTUP_TRIALS = 3
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchSpec:
    """What to search; one base RunConfig per frontend holds model, data set, Target, epochs, seed, OUT."""

    bases: tuple[RunConfig, ...]
    trials: int = 20  # per frontend
    max_accuracy_drop: float = 1.0  # points
    time_budget_s: float | None = None
    seed: int = 0
    limits: Limits = field(default_factory=Limits)  # constraints beside accuracy: a trial over one is infeasible

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ConfigError("--trials", self.trials, "must be at least 1")
        if not 0.0 <= self.max_accuracy_drop <= 100.0:
            raise ConfigError("--max-accuracy-drop", self.max_accuracy_drop, "must be in [0, 100] points")
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("--time-budget", self.time_budget_s, "must be positive")

    @property
    def out(self) -> Path:
        return Path(self.bases[0].out)

    @property
    def frontends(self) -> tuple[str, ...]:
        return tuple(b.frontend for b in self.bases)

    def base(self, frontend: str) -> RunConfig:
        return next(b for b in self.bases if b.frontend == frontend)


# ---- trial outcomes and the ledger (OUT/search.json) ------------------------------------------

@dataclass(frozen=True)
class TrialOutcome:
    frontend: str
    params: dict[str, Any]
    status: str  # "ok", "failed" or "stopped" (not run: cannot meet the constraint)
    run_dir: str | None = None  # relative to OUT
    config_hash: str = ""
    baseline_dir: str | None = None
    accuracy: float | None = None
    baseline_accuracy: float | None = None
    required_accuracy: float | None = None
    cycles: int | None = None
    weights: int | None = None
    baseline_cycles: int | None = None
    baseline_weights: int | None = None
    reference_cycles: int | None = None  # the dense reference: the search's own dense int8 run (float epochs only)
    reference_weights: int | None = None
    reference_accuracy: float | None = None
    cycles_source: str = "estimate"
    seconds: float = 0.0
    note: str = ""
    # What the trial's deployment needs (backend/budget.py), kept so a resumed search judges it by its own limits
    sram_bytes: int | None = None
    flash_bytes: int | None = None
    inference_ms: float | None = None
    misfit: str = ""  # "does not fit: …" sentences, "; "-joined ("" fits, or no limits)
    over_limit: float = 0.0  # largest need / limit − 1 (0: fits)

    @property
    def fits(self) -> bool:
        return not self.misfit

    @property
    def key(self) -> str:
        return self.frontend + json.dumps(self.params, sort_keys=True)

    @property
    def feasible(self) -> bool:
        return self.status == "ok" and self.accuracy is not None and self.required_accuracy is not None \
            and self.accuracy >= self.required_accuracy - 1e-9 and self.fits

    @property
    def constraint(self) -> float:
        """(required − accuracy), or how far over a limit when that is worse: ≤ 0 feasible; a failed or
        stopped trial counts as one point short or worse."""
        if self.accuracy is None or self.required_accuracy is None:
            return 1.0
        short = round(self.required_accuracy - self.accuracy, 6)
        return max(short, self.over_limit) if self.over_limit > 0 else short

    def score(self) -> float:
        """Best-model order among feasible trials: cycles and weights relative to the dense reference
        (one denominator for every trial of a frontend), summed; relative to the trial's baseline
        when the reference's figures are missing."""
        cycles, weights = (self.reference_cycles, self.reference_weights) if self.reference_cycles and self.reference_weights \
            else (self.baseline_cycles, self.baseline_weights)
        if not (self.cycles and self.weights and cycles and weights):
            return math.inf
        return self.cycles / cycles + self.weights / weights

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialOutcome":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def settings(spec: SearchSpec) -> dict[str, Any]:
    b = spec.bases[0]
    return {"frontends": list(spec.frontends), "model": b.model, "dataset": b.dataset, "target": b.target.as_dict(),
            "epochs": b.epochs, "seed": b.seed, "train_limit": b.train_limit, "eval_limit": b.eval_limit,
            "run_fvp": b.run_fvp, "max_accuracy_drop": spec.max_accuracy_drop, "trials_per_frontend": spec.trials,
            "limits": spec.limits.as_dict()}


def write_manifest(spec: SearchSpec, trials: list[TrialOutcome], references: dict[str, str]) -> Path:
    data = {"manifest_version": MANIFEST_VERSION, "kind": "search",
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "settings": settings(spec), "references": references, "trials": [t.to_dict() for t in trials]}
    return write_json_atomic(spec.out / MANIFEST_NAME, data)


def read_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text())
        data["trials"] = [TrialOutcome.from_dict(t) for t in data["trials"]]
        return data
    except FileNotFoundError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(str(path), f"not a search manifest ({exc})") from None


def previous_trials(spec: SearchSpec) -> list[TrialOutcome]:
    """Trials of an earlier run of the same search (same model, data, Target, epochs, seed, limits);
    feasibility is recomputed with this run's drop."""
    try:
        data = read_manifest(spec.out)
    except FileNotFoundError:
        return []
    old, new = dict(data.get("settings", {})), settings(spec)
    same = [k for k in new if k not in ("max_accuracy_drop", "trials_per_frontend", "frontends", "limits")]
    if any(old.get(k) != new[k] for k in same):
        raise ConfigError("--out", str(spec.out), "holds a search with other settings",
                          "give another --out, or the same model, data set, target, epochs, seed and limits")
    drop = spec.max_accuracy_drop / 100.0
    required = lambda t: None if t.baseline_accuracy is None else round(t.baseline_accuracy - drop, 6)  # noqa: E731
    return [judged(dataclasses.replace(t, required_accuracy=required(t)), spec.limits)
            for t in data["trials"] if t.frontend in spec.frontends]


def judged(outcome: TrialOutcome, limits: Limits) -> TrialOutcome:
    """The outcome judged by `limits` from the needs it keeps (a run trial only; stopped and failed ones have none)."""
    if outcome.status != "ok":
        return outcome
    n = Needs(outcome.sram_bytes, outcome.flash_bytes, outcome.inference_ms)
    return dataclasses.replace(outcome, misfit="; ".join(misfits_of(n, limits)), over_limit=excess(n, limits))


# ---- one trial (runs inside a Tune trial actor on the driver's node) ---------------------------

@dataclass(frozen=True)
class TrialContext:
    spec: SearchSpec
    threads: int
    caches: dict[str, dict[str, bytes]]  # frontend → float-cache units of its reference lane
    submitter: Any  # the search's CellSubmitter actor: every cell of a trial goes through it


class CellSubmitter:
    """Submits a trial's cells on its behalf, from a plain actor the driver started.

    A task inherits the runtime env of whoever submits it, and Ray serialises an inherited env
    differently (compact JSON) from one given by a driver or plain actor: a cell a Tune trial actor
    submitted (Tune gives its actors env vars) landed in a worker pool of its own, apart from the
    warm workers of the references the driver ran, and paid the framework imports again (checked with
    a bare `ray.remote` task: `get_runtime_env_string()` differs only in its spaces, and so do the pools).
    Run as a Ray actor with many concurrent calls; each call waits for its cell."""

    def run(self, config: RunConfig, threads: int, cache: dict[str, bytes] | None) -> Any:
        import ray

        from condition.compare.runner import remote_cell

        return ray.get(remote_cell(config.frontend, threads).remote(0, config, threads, cache, None))


def start_submitter(calls: int) -> Any:
    """The CellSubmitter of one search: 0 CPUs, `calls` at once (the trials that run at once)."""
    import ray

    return ray.remote(num_cpus=0, max_concurrency=max(1, calls))(CellSubmitter).remote()


def int8_accuracy(record: MetricsRecord) -> float | None:
    a = record.accuracy_of("int8")
    return None if a is None else a.value


def objectives(record: MetricsRecord) -> tuple[int | None, int | None, str]:
    """(cycles, encoded weight bytes, where the cycles come from): FVP-measured NPU active cycles
    when the run measured them, else Vela's total-cycle estimate."""
    weights = record.vela.encoded_weight_bytes if record.vela else None
    if record.fvp is not None and record.fvp.npu_active_cycles:
        return record.fvp.npu_active_cycles, weights, "fvp"
    return (record.vela.total_cycles if record.vela else None), weights, "estimate"


def ensure_run(config: RunConfig, ctx: TrialContext, cache: dict[str, bytes] | None) -> MetricsRecord:
    """The run's record: read when it is already done (same hash), else run as a Ray task and written
    into OUT. A lock per hash makes concurrent trials that need the same baseline run it once."""
    import ray

    from condition.compare.runner import existing_record, install_result, is_done
    from condition.compare.worker import write_failed_record

    out = ctx.spec.out
    lock = out / ".locks" / f"{config.hash}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the process dies, too
        if not is_done(config):
            try:
                result = ray.get(ctx.submitter.run.remote(config, ctx.threads, cache))
                install_result(out, config, result)
            except Exception as exc:  # noqa: BLE001 — the task did not return (worker died): a failed run
                from condition.compare.runner import describe_task_error

                write_failed_record(config, describe_task_error(exc))
    record = existing_record(config)
    if record is None:
        raise ArtifactError(str(config.run_dir()), "run left no readable record")
    return record


def hopeless(params: dict[str, Any], frontend: str, required: float, finished: list[TrialOutcome]) -> TrialOutcome | None:
    """A finished trial that shows `params` cannot reach `required` (see the module docstring)."""
    def clusters(p: dict[str, Any]) -> float:
        return p["clusters"] or math.inf  # no clustering is the least aggressive

    for t in finished:
        u = t.params
        if t.frontend != frontend or t.status != "ok" or t.accuracy is None:
            continue
        if (u["structure"], u["schedule"], u["quantize"]) != (params["structure"], params["schedule"], params["quantize"]):
            continue
        if params["sparsity"] < u["sparsity"] or clusters(params) > clusters(u) or params["fine_tune_epochs"] > u["fine_tune_epochs"]:
            continue
        if params.get("qat_epochs", 0) > u.get("qat_epochs", 0):
            continue
        if t.accuracy + STOP_MARGIN < required:
            return t
    return None


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """Tune trainable: one trial; reports its objectives, constraint and outcome once."""
    from ray import tune

    outcome = evaluate_trial(config["frontend"], normalise(config["params"]), ctx)
    tune.report({"cycles": float(outcome.cycles or 0), "weights": float(outcome.weights or 0), "constraint": outcome.constraint,
                 "status": outcome.status, "outcome": json.dumps(outcome.to_dict())})


def evaluate_trial(frontend: str, params: dict[str, Any], ctx: TrialContext) -> TrialOutcome:
    start = time.perf_counter()
    spec, out = ctx.spec, ctx.spec.out
    base = spec.base(frontend)
    config, bconfig = trial_config(params, base), baseline_config(params, base)
    rel = lambda c: c.run_dir().relative_to(out).as_posix()  # noqa: E731
    baseline = ensure_run(bconfig, ctx, float_cache_units(out, frontend, bconfig.epochs))
    common = dict(frontend=frontend, params=params, config_hash=config.hash, baseline_dir=rel(bconfig),
                  **reference_figures(out, rel(reference_config(base))))
    b_acc = int8_accuracy(baseline)
    if baseline.status != "ok" or b_acc is None:
        return TrialOutcome(status="failed", note=f"baseline failed: {baseline.error}", seconds=time.perf_counter() - start, **common)
    b_cycles, b_weights, _ = objectives(baseline)
    required = round(b_acc - spec.max_accuracy_drop / 100.0, 6)
    common.update(baseline_accuracy=b_acc, required_accuracy=required, baseline_cycles=b_cycles, baseline_weights=b_weights)
    from condition.compare.runner import is_done

    if not is_done(config):
        finished = _ledger(out)
        witness = hopeless(params, frontend, required, finished)
        if witness is not None:
            return TrialOutcome(status="stopped", seconds=time.perf_counter() - start, **common,
                                note=f"not run: {describe(witness.params)} reached only {witness.accuracy:.4f}"
                                     f" < {required:.4f} − {STOP_MARGIN}")
    record = ensure_run(config, ctx, ctx.caches.get(frontend))
    cycles, weights, source = objectives(record)
    acc = int8_accuracy(record)
    status = "ok" if record.verdict == "ok" and acc is not None and cycles and weights else "failed"
    note = ("flagged: " if record.verdict == "flagged" else "") + (record.reason or "")  # flagged: figures that cannot be right
    n = needs(record)
    return judged(TrialOutcome(status=status, run_dir=rel(config), accuracy=acc, cycles=cycles, weights=weights, cycles_source=source,
                               seconds=time.perf_counter() - start, note=note, sram_bytes=n.sram_bytes, flash_bytes=n.flash_bytes,
                               inference_ms=n.inference_ms, **common), spec.limits)


def float_cache_units(out: Path, frontend: str, epochs: int) -> dict[str, bytes] | None:
    """The float-cache entries in OUT of `frontend` trained for `epochs` (e.g. epoch snapshots of a
    longer baseline's training, condition/float_cache.py), packed for a baseline's task."""
    from condition.compare.transfer import pack

    rels = []
    for identity in sorted(Path(out).glob(f"{frontend}/.float-cache/*/identity.json")):
        try:
            if json.loads(identity.read_text()).get("epochs") == epochs:
                rels.append(identity.parent.relative_to(out).as_posix())
        except (OSError, ValueError):
            continue
    return pack(out, rels) or None


def reference_figures(out: Path, run_dir: str) -> dict[str, Any]:
    """reference_cycles, reference_weights and reference_accuracy (int8) of a frontend's dense
    reference run (OUT/<run_dir>); Nones when it has no ok record."""
    try:
        record = MetricsRecord.read(Path(out) / run_dir)
    except (OSError, ArtifactError):
        record = None
    if record is None or record.status != "ok":
        return dict(reference_cycles=None, reference_weights=None, reference_accuracy=None)
    cycles, weights, _ = objectives(record)
    return dict(reference_cycles=cycles, reference_weights=weights, reference_accuracy=int8_accuracy(record))


def with_references(trials: list[TrialOutcome], out: Path, references: dict[str, str]) -> list[TrialOutcome]:
    """The trials with their dense reference's figures filled in where the ledger lacks them (a
    ledger written before they were recorded per trial)."""
    figures: dict[str, dict[str, Any]] = {}
    filled = []
    for t in trials:
        if None in (t.reference_cycles, t.reference_weights, t.reference_accuracy) and t.frontend in references:
            if t.frontend not in figures:
                figures[t.frontend] = reference_figures(out, references[t.frontend])
            t = dataclasses.replace(t, **figures[t.frontend])
        filled.append(t)
    return filled


def _ledger(out: Path) -> list[TrialOutcome]:
    try:
        return read_manifest(out)["trials"]
    except (FileNotFoundError, ArtifactError):
        return []


# ---- Optuna through Ray Tune -------------------------------------------------------------------

def make_searcher(seed: int, points: list[dict[str, Any]], space: str) -> Any:
    """OptunaSearch with Optuna's multi-objective TPE sampler over `space` (search_space.SPACES),
    `points` evaluated first; `constraint` from each result becomes the Optuna trial's constraint
    (TPE then ranks infeasible trials below feasible ones), and stopped or failed trials are told
    as pruned."""
    import optuna
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    class ConstrainedOptunaSearch(OptunaSearch):
        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            ot_trial = self._ot_trials.get(trial_id)
            if ot_trial is not None and result and "constraint" in result:
                ot_trial.set_constraint("accuracy", float(result["constraint"]))
                if result.get("status") != "ok" and trial_id not in self._completed_trials:
                    self._ot_study.tell(ot_trial, state=TrialState.PRUNED)
                    self._completed_trials.add(trial_id)
                    return
            super().on_trial_complete(trial_id, result, error)

        def add_finished(self, outcome: TrialOutcome) -> None:
            """A trial of an earlier run of this search, so a resumed study knows it (not one outside
            this space, e.g. of an earlier version's space: it stays in the ledger and the report)."""
            if not in_space(outcome.params, space):
                return
            ok = outcome.status == "ok" and outcome.cycles and outcome.weights
            trial = optuna.trial.create_trial(
                state=TrialState.COMPLETE if ok else TrialState.PRUNED,
                values=[float(outcome.cycles), float(outcome.weights)] if ok else None,
                params=outcome.params, distributions=distributions(outcome.params, space),
                system_attrs={"constraints:accuracy": outcome.constraint})
            self._ot_study.add_trial(trial)

    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, n_startup_trials=STARTUP_TRIALS)
    return ConstrainedOptunaSearch(space=functools.partial(define_space, space=space), metric=list(METRICS), mode=list(MODES),
                                   sampler=sampler, points_to_evaluate=points or None)


def per_frontend_search(searchers: dict[str, Any], remaining: dict[str, int]) -> Any:
    """One Tune Searcher over one Optuna study per frontend: suggestions alternate between frontends
    (the one with the most trials left first), results go back to the study that proposed them."""
    from ray.tune.search import Searcher

    class PerFrontendSearch(Searcher):
        def __init__(self) -> None:
            super().__init__(metric=list(METRICS)[0], mode="min")
            self.left = dict(remaining)
            self.owner: dict[str, str] = {}

        def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
            return True

        def suggest(self, trial_id: str) -> dict | None:
            open_ = [f for f in searchers if self.left.get(f, 0) > 0]
            if not open_:
                return Searcher.FINISHED
            frontend = max(open_, key=lambda f: self.left[f])
            self.left[frontend] -= 1
            self.owner[trial_id] = frontend
            return {"frontend": frontend, "params": searchers[frontend].suggest(trial_id)}

        def on_trial_result(self, trial_id: str, result: dict) -> None:
            return None

        def save(self, checkpoint_path: str) -> None:
            return None  # resume reads OUT/search.json, not Tune's searcher checkpoint

        def restore(self, checkpoint_path: str) -> None:
            return None

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            frontend = self.owner.pop(trial_id, None)
            if frontend is not None:
                searchers[frontend].on_trial_complete(trial_id, result, error)

    return PerFrontendSearch()


class SearchEvents:
    """What the search reports (the CLI prints it): references done, each trial, the end."""

    def begin(self, total: int, done: int, where: str) -> None:
        return None

    def trial(self, outcome: TrialOutcome, done: int, total: int, best: dict[str, TrialOutcome]) -> None:
        return None


def best_by_frontend(trials: list[TrialOutcome]) -> dict[str, TrialOutcome]:
    best: dict[str, TrialOutcome] = {}
    for t in trials:
        if t.feasible and (t.frontend not in best or t.score() < best[t.frontend].score()):
            best[t.frontend] = t
    return best


@dataclass
class _Ledger:
    spec: SearchSpec
    trials: list[TrialOutcome]
    references: dict[str, str]
    events: SearchEvents
    total: int
    seen: set[str] = field(default_factory=set)

    def add(self, outcome: TrialOutcome) -> None:
        self.trials = [t for t in self.trials if t.key != outcome.key] + [outcome]
        write_manifest(self.spec, self.trials, self.references)
        self.events.trial(outcome, len(self.trials), self.total, best_by_frontend(self.trials))


def run_search(spec: SearchSpec, address: str | None = None, events: SearchEvents | None = None,
               reference_events: Any = None) -> list[TrialOutcome]:
    """Run (or resume) the search; returns every trial of OUT/search.json, this run's and earlier ones."""
    from condition.compare.out_lock import hold_out

    # Tune runs each trial in a working folder of its own: a relative OUT would land there
    spec = dataclasses.replace(spec, bases=tuple(dataclasses.replace(b, out=Path(b.out).resolve()) for b in spec.bases))
    with hold_out(spec.out):  # one writer per OUT (re-entrant: the CLI holds it already)
        return _run_search(spec, address, events, reference_events)


def _run_search(spec: SearchSpec, address: str | None, events: SearchEvents | None, reference_events: Any) -> list[TrialOutcome]:
    from condition.compare.cluster import ray_session
    from condition.compare.runner import LaneCache, lane_key, run_cells

    events = events or SearchEvents()
    started = time.monotonic()
    earlier = previous_trials(spec)
    references = {b.frontend: reference_config(b).run_dir().relative_to(spec.out).as_posix() for b in spec.bases}
    write_manifest(spec, earlier, references)
    done = {f: sum(1 for t in earlier if t.frontend == f) for f in spec.frontends}
    remaining = {f: max(0, spec.trials - done[f]) for f in spec.frontends}
    total = spec.trials * len(spec.frontends)
    if not any(remaining.values()):
        events.begin(total, sum(done.values()), "nothing to run")
        return earlier
    with ray_session(spec.out, address) as session:
        where = f"Ray at {session.address}" if session.address else f"embedded Ray, {session.cpus} CPUs"
        events.begin(total, sum(done.values()), where)
        cells = [Cell(reference_config(b), "dense int8 (reference)") for b in spec.bases]
        seeds = [Cell(seed_baseline_config(space_for(b.target), b), "dense int8 (the seed points' same-epochs baseline)")
                 for b in spec.bases]
        run_cells(cells + seeds, events=reference_events, threads=1)  # trials run single-threaded too: one thread setting
        lanes = LaneCache(spec.out)
        ctx = TrialContext(spec, threads=1, caches={c.config.frontend: lanes.units(lane_key(c)) for c in cells},
                           submitter=start_submitter(session.cpus))
        budget = None if spec.time_budget_s is None else max(1.0, spec.time_budget_s - (time.monotonic() - started))
        ledger = _Ledger(spec, list(earlier), references, events, total)
        try:
            _tune(spec, ctx, session, remaining, ledger, budget)
        finally:
            import ray

            ray.kill(ctx.submitter)  # also on a Ray the caller keeps (a cluster, a test's), where it would linger
        return ledger.trials


def _tune(spec: SearchSpec, ctx: TrialContext, session: Any, remaining: dict[str, int], ledger: _Ledger, budget: float | None) -> None:
    import os

    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")
    from ray import tune

    searchers = {}
    for f in spec.frontends:
        known = [t for t in ledger.trials if t.frontend == f]
        space = space_for(spec.base(f).target)
        points = [dict(p) for p in SEED_POINTS[space] if normalise(p) not in [t.params for t in known]]
        searchers[f] = make_searcher(spec.seed, points, space)
        for t in known:
            searchers[f].add_finished(t)

    class Progress(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if "outcome" in result:
                ledger.add(TrialOutcome.from_dict(json.loads(result["outcome"])))

    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), {"cpu": 0, f"node:{session.node_ip}": 0.001})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=per_frontend_search(searchers, remaining), num_samples=sum(remaining.values()),
                                    reuse_actors=True,  # a trial is a light coordinator: the next one reuses its process
                                    max_concurrent_trials=max(1, session.cpus // ctx.threads), time_budget_s=budget),
        run_config=tune.RunConfig(name=time.strftime("search-%Y%m%d-%H%M%S"), storage_path=str((spec.out / "logs" / "tune").resolve()),
                                  verbose=0, callbacks=[Progress()], log_to_file=False),
    )
    tuner.fit()
