"""The comparison as data: sections (model × data set × Target × seed) of rows (one per technique
chain) with each framework's figures side by side, ratios to each framework's int8 baseline
(post-training-quant) and tf/torch ratios. Writers only format what is computed here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from condition.backend.budget import MISFIT
from condition.backend.metrics import MetricsRecord
from condition.backend.target import Target
from condition.compare.records import Comparison, Entry
from condition.techniques import PostTrainingQuantConfig

BASELINE = [PostTrainingQuantConfig.name]
# The deployable file per frontend: what goes onto the device.
DEPLOYABLE = {"tf": ("vela_tflite", "tflite"), "torch": ("pte",)}
RATIO_METRICS = ("encoded_weight_bytes", "artifact_bytes", "npu_cycles", "total_cycles", "dram_bytes")
# Within this many accuracy points of the int8 baseline a model counts as "as accurate".
BEST_ACCURACY_TOLERANCE = 0.01


@dataclass(frozen=True)
class Side:
    """One framework's figures for one technique; None where a figure does not exist."""

    status: str  # ok | failed | flagged (figures that cannot be right) | not run | absent (not in the matrix)
    error: str | None = None
    accuracy: float | None = None  # int8 functional accuracy (float accuracy on the float row)
    accuracy_kind: str = ""
    evaluator: str = ""
    images: int | None = None
    float_accuracy: float | None = None
    encoded_weight_bytes: int | None = None  # Vela estimate
    original_weight_bytes: int | None = None
    artifact_kind: str = ""
    artifact_bytes: int | None = None
    npu_cycles: int | None = None  # Vela estimate
    total_cycles: int | None = None
    inference_ms: float | None = None
    dram_bytes: int | None = None
    flash_bytes: int | None = None
    ops_on_npu: int | None = None
    ops_on_cpu: int | None = None
    sparsity: float | None = None  # measured on the exported int8 weights
    max_unique_values: int | None = None
    fvp_npu_active_cycles: int | None = None  # measured (FVP)
    run_dir: str = ""
    seconds: float | None = None
    record: MetricsRecord | None = field(default=None, compare=False, repr=False)

    def get(self, metric: str) -> float | None:
        return getattr(self, metric)


@dataclass(frozen=True)
class Row:
    label: str
    is_float: bool
    is_baseline: bool
    sides: dict[str, Side]
    vs_baseline: dict[str, dict[str, float | None]]  # frontend → metric → ratio (accuracy: difference)
    tf_over_torch: dict[str, float | None]  # metric → tf/torch (accuracy: tf − torch)


@dataclass(frozen=True)
class Section:
    model: str
    dataset: str
    target: Target
    seed: int
    epochs: int
    frontends: tuple[str, ...]
    rows: tuple[Row, ...]
    has_fvp: bool

    @property
    def title(self) -> str:
        return f"{self.model} · {self.dataset} · {self.target.label()} · seed {self.seed}"

    def row(self, label: str) -> Row | None:
        return next((r for r in self.rows if r.label == label), None)


def side_from_entry(entry: Entry) -> Side:
    r = entry.record
    status = entry.status
    if r is None or status == "not run":
        return Side(status="not run", run_dir=str(entry.run_dir))
    seconds = r.step_seconds.get("total")
    over_limit_only = status == "flagged" and all(p.startswith(MISFIT) for p in r.problems)
    if status != "ok" and not over_limit_only:  # a cell over a limit keeps its figures (they are right; it is listed as flagged)
        return Side(status=status, error=r.reason, run_dir=str(entry.run_dir), seconds=seconds, record=r)
    is_float = not r.techniques
    acc = r.accuracy_of("float") if is_float else (r.accuracy_of("int8") or r.accuracy_of("fake_quant"))
    flt = r.accuracy_of("float")
    art = next((a for kind in DEPLOYABLE.get(r.frontend, ()) if (a := r.artifact(kind)) is not None), None)
    v = r.vela
    w = r.weights
    return Side(
        status="ok",
        accuracy=acc.value if acc else None,
        accuracy_kind=acc.kind if acc else "",
        evaluator=acc.evaluator if acc else "",
        images=acc.images if acc else None,
        float_accuracy=flt.value if flt else None,
        encoded_weight_bytes=v.encoded_weight_bytes if v else None,
        original_weight_bytes=v.original_weight_bytes if v else None,
        artifact_kind=art.kind if art else "",
        artifact_bytes=art.bytes if art else None,
        npu_cycles=v.npu_cycles if v else None,
        total_cycles=v.total_cycles if v else None,
        inference_ms=v.inference_ms if v else None,
        dram_bytes=v.dram_bytes if v else None,
        flash_bytes=(v.on_chip_flash_bytes + v.off_chip_flash_bytes) if v else None,
        ops_on_npu=v.ops_on_npu if v else None,
        ops_on_cpu=v.ops_on_cpu if v else None,
        sparsity=w.sparsity if (w and w.layers) else None,
        max_unique_values=w.max_unique_values if (w and w.layers) else None,
        fvp_npu_active_cycles=r.fvp.npu_active_cycles if r.fvp else None,
        run_dir=str(entry.run_dir),
        seconds=seconds,
        record=r,
    )


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def build_sections(comparison: Comparison) -> list[Section]:
    """Group entries by what must be equal for a fair side-by-side, then one row per chain label."""
    groups: dict[tuple[object, ...], list[Entry]] = {}
    for e in comparison.entries:
        groups.setdefault(_section_key(e), []).append(e)
    sections = []
    for key, entries in groups.items():
        frontends = tuple(sorted({e.frontend for e in entries}, key=lambda f: (f != "tf", f)))
        labels: dict[str, dict[str, Side]] = {}
        chains: dict[str, list[str]] = {}
        for e in entries:
            labels.setdefault(e.label, {})[e.frontend] = side_from_entry(e)
            chains.setdefault(e.label, list(e.techniques))
        baseline = next((lab for lab, ch in chains.items() if ch == BASELINE), None)
        rows = [_float_row(labels, baseline, frontends)]
        for label, sides in labels.items():
            for fw in frontends:
                sides.setdefault(fw, Side(status="absent"))
            base = labels.get(baseline, {}) if baseline else {}
            vs = {fw: _vs(sides[fw], base.get(fw)) for fw in frontends}
            tf_torch = _vs(sides["tf"], sides["torch"]) if {"tf", "torch"} <= set(frontends) else {}
            rows.append(Row(label, chains.get(label) == [], label == baseline, sides, vs, tf_torch))
        model, dataset, target, seed, epochs = key
        sections.append(Section(
            model=str(model), dataset=str(dataset), target=target, seed=int(seed), epochs=int(epochs),
            frontends=frontends, rows=tuple(rows),
            has_fvp=any(s.fvp_npu_active_cycles is not None for r in rows for s in r.sides.values()),
        ))
    return sections


FLOAT_LABEL = "float (reference)"


def _float_row(labels: dict[str, dict[str, Side]], baseline: str | None, frontends: tuple[str, ...]) -> Row:
    """The float32 model every chain of a framework started from. Not a run of its own: each record
    carries the float accuracy of that (cached, shared) model; take it from the int8 baseline's
    record, else from the first finished one. No NPU figures: Vela compiles int8 models only."""
    sides: dict[str, Side] = {}
    for fw in frontends:
        candidates = ([labels[baseline][fw]] if baseline and fw in labels.get(baseline, {}) else []) + \
                     [s[fw] for s in labels.values() if fw in s]
        source = next((c for c in candidates if c.status == "ok" and c.record is not None and c.record.accuracy_of("float")), None)
        if source is None:
            sides[fw] = Side(status="not run" if any(c.status == "not run" for c in candidates) else "absent")
            continue
        flt = source.record.accuracy_of("float")
        sides[fw] = Side(status="ok", accuracy=flt.value, accuracy_kind="float", evaluator=flt.evaluator, images=flt.images,
                         float_accuracy=flt.value, run_dir=source.run_dir)
    tf_torch = {"accuracy": difference(sides["tf"].accuracy, sides["torch"].accuracy)} if {"tf", "torch"} <= set(frontends) else {}
    return Row(FLOAT_LABEL, True, False, sides, {fw: {} for fw in frontends}, tf_torch)


def _section_key(e: Entry) -> tuple[object, ...]:
    return (e.model, e.dataset, e.target, e.seed, e.epochs)


def _vs(side: Side, base: Side | None) -> dict[str, float | None]:
    if base is None or side.status != "ok" or base.status != "ok":
        return {}
    out: dict[str, float | None] = {m: ratio(side.get(m), base.get(m)) for m in RATIO_METRICS}
    out["accuracy"] = difference(side.accuracy, base.accuracy) if side.accuracy_kind == base.accuracy_kind else None
    return out


def pareto_front(points: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """(size, accuracy, label) points no other point beats on both: smaller and at least as accurate."""
    front = []
    for p in sorted(points, key=lambda p: (p[0], -p[1])):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    return front


def best_row(section: Section, frontend: str) -> Row | None:
    """Fewest total cycles among int8 rows within BEST_ACCURACY_TOLERANCE of the framework's int8
    baseline accuracy (the most accurate row when there is no baseline)."""
    rows = [r for r in section.rows if not r.is_float and r.sides[frontend].status == "ok"
            and r.sides[frontend].accuracy is not None and r.sides[frontend].total_cycles is not None]
    if not rows:
        return None
    base = next((r for r in rows if r.is_baseline), None)
    if base is None:
        return max(rows, key=lambda r: r.sides[frontend].accuracy or 0.0)
    floor = (base.sides[frontend].accuracy or 0.0) - BEST_ACCURACY_TOLERANCE
    good = [r for r in rows if (r.sides[frontend].accuracy or 0.0) >= floor]
    return min(good, key=lambda r: (r.sides[frontend].total_cycles or 0, -(r.sides[frontend].accuracy or 0.0)))
