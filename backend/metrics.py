"""The one metrics record per artifact, written as schema-versioned JSON.

Each group of figures carries `source`: "estimate" (Vela's compiler model), "measured" (run on
real data: interpreter, reference model, FVP, or counted on the exported tensors). Writers in
compare/ only format these records.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, TypeVar

from condition.backend.atomic import write_json_atomic
from condition.backend.target import Target
from condition.errors import ArtifactError, ConfigError

T = TypeVar("T")

SCHEMA_VERSION = 1
RECORD_NAME = "metrics.json"


@dataclass(frozen=True)
class AccuracyResult:
    """Top-1 accuracy on `images` test images; `kind` is float, int8 or fake_quant."""

    kind: str
    value: float
    evaluator: str  # e.g. "keras float32", "tflite-interpreter int8", "tosa-reference-model", "pt2e fake-quant"
    images: int
    source: str = "measured"


@dataclass(frozen=True)
class LayerWeights:
    """One weighted layer; `unique_values` is the largest count of distinct int8 values in one
    quantization channel (the whole tensor when it is quantized per tensor): `unique_axis` says
    which ("channel" | "tensor"; "" in records written before it was recorded).

    `two_four`: Vela's U85 2:4 sparse format fits the exported tensor (a Conv or fully connected
    layer whose every group of 4 consecutive input channels, at each kernel position of each output
    channel, holds at least 2 zeros). `conditioned`: the chain's techniques that changed this layer
    (e.g. ["prune", "cluster"]); `left_out`: technique -> why it left this layer as it was.
    """

    name: str
    shape: list[int]
    params: int
    zeros: int
    unique_values: int
    kind: str = ""  # "conv" | "depthwise" | "fc" | "transpose_conv", from the exported operator
    unique_axis: str = ""
    two_four: bool = False
    conditioned: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0


@dataclass(frozen=True)
class WeightStats:
    """Counted on the exported int8 weight tensors, not trusted from a training wrapper."""

    layers: list[LayerWeights] = field(default_factory=list)
    source: str = "measured"
    stage: str = ""  # for intermediate stages of a chain: the technique just applied (e.g. "prune")

    @property
    def params(self) -> int:
        return sum(l.params for l in self.layers)

    @property
    def sparsity(self) -> float:
        p = self.params
        return sum(l.zeros for l in self.layers) / p if p else 0.0

    @property
    def max_unique_values(self) -> int:
        return max((l.unique_values for l in self.layers), default=0)


@dataclass(frozen=True)
class Artifact:
    kind: str  # "float", "tflite", "vela_tflite", "pte", "tosa", "pt2"
    path: str  # relative to the run folder
    bytes: int


@dataclass(frozen=True)
class LayerEstimate:
    name: str
    operator: str
    target: str  # "NPU" or "CPU"
    op_cycles: int
    npu_cycles: int
    macs: int
    mac_utilisation_pct: float


@dataclass(frozen=True)
class VelaEstimate:
    """Vela's performance estimate; every figure here is a compiler estimate, not a measurement.
    Filled from Vela's CSVs by backend/vela.py (or from a compiled .pte's blocks, source "pte")."""

    source: str = "estimate"
    accelerator: str = ""
    system_config: str = ""
    memory_mode: str = ""
    clock_hz: float = 0.0
    original_weight_bytes: int = 0
    encoded_weight_bytes: int = 0
    npu_cycles: int = 0
    total_cycles: int = 0
    sram_bytes: int = 0
    dram_bytes: int = 0
    on_chip_flash_bytes: int = 0
    off_chip_flash_bytes: int = 0
    weights_storage_area: str = ""
    macs: int = 0
    inference_ms: float = 0.0
    ops_on_npu: int = 0
    ops_on_cpu: int = 0
    cpu_ops: list[str] = field(default_factory=list)
    per_layer: list[LayerEstimate] = field(default_factory=list)
    # Footprint, apart from the traffic above: Vela's peak allocation per memory (its summary's "Total … used"),
    # where the feature-map arena lives (weights: weights_storage_area), and the SRAM cache of a Dedicated_Sram
    # mode. None: not in the record (written before, or read from a .pte).
    sram_used_bytes: int | None = None
    dram_used_bytes: int | None = None
    on_chip_flash_used_bytes: int | None = None
    off_chip_flash_used_bytes: int | None = None
    feature_map_storage_area: str = ""
    arena_cache_bytes: int | None = None


@dataclass(frozen=True)
class ArtifactMemory:
    """What the deployed artifact asks its runtime for, read from the file's bytes (no estimate).

    .pte: `planned_bytes` is the method's memory plan (its non-constant buffers), the least to give
    arm_executor_runner's method allocator pool (which also holds the method's own objects);
    `scratch_bytes` the largest Ethos-U delegate scratch (its `scratch_size` block), for the scratch
    (temp) allocator pool. Vela .tflite: `scratch_bytes` and `fast_scratch_bytes` are Vela's arena
    tensors (`scratch`, `scratch_fast`); `planned_bytes` every non-constant tensor (arena, inputs,
    outputs, CPU ops' tensors) at TFLite Micro's 16-byte alignment: its tensor arena without the
    interpreter's own bookkeeping, which depends on the build and is not counted here."""

    artifact: str  # "pte" | "vela_tflite"
    planned_bytes: int
    scratch_bytes: int
    fast_scratch_bytes: int = 0
    source: str = "file"


@dataclass(frozen=True)
class FvpMeasurement:
    """Counters read from an FVP or board log; source is always "measured"."""

    pmu_cycle_counter: int | None = None
    npu_active_cycles: int | None = None
    mac_active_cycles: int | None = None
    weight_decoder_active_cycles: int | None = None
    ext_read_beats: int | None = None
    ext_write_beats: int | None = None
    npu_idle_cycles: int | None = None
    inferences: int = 1
    events: dict[str, int] = field(default_factory=dict)
    platform: str = ""  # e.g. "FVP_Corstone_SSE-320" or "imported log"
    log_path: str = ""
    source: str = "measured"


@dataclass
class MetricsRecord:
    frontend: str  # "tf" or "torch"
    techniques: list[str]  # the chain, e.g. ["prune", "cluster", "qat"]
    options: dict[str, Any]  # technique options, by technique
    model: str
    dataset: str
    target: Target  # JSON: Target.as_dict(), converted only in to_dict / from_dict
    seed: int
    epochs: int
    status: str = "ok"  # "ok" or "failed"
    error: str | None = None
    accuracy: list[AccuracyResult] = field(default_factory=list)
    weights: WeightStats | None = None
    stage_weights: list[WeightStats] = field(default_factory=list)  # earlier stages of a chain, each exported and counted
    artifacts: list[Artifact] = field(default_factory=list)
    vela: VelaEstimate | None = None
    fvp: FvpMeasurement | None = None
    memory: ArtifactMemory | None = None  # read from the deployed artifact (records before it: None)
    limits: dict[str, float] = field(default_factory=dict)  # budgets the run was judged by (backend/budget.py)
    step_seconds: dict[str, float] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # figures that cannot be right (backend/plausibility.py)
    fine_tuning: dict[str, Any] = field(default_factory=dict)  # teacher, loss, schedule, epochs (condition/fine_tuning.py)
    channel_plan: dict[str, Any] = field(default_factory=dict)  # channel-prune: granule, mode, per-layer channels (condition/channel_plan.py)
    config_hash: str = ""
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    schema_version: int = SCHEMA_VERSION

    # ---- convenience accessors used by reports -------------------------------------------
    def accuracy_of(self, kind: str) -> AccuracyResult | None:
        for a in self.accuracy:
            if a.kind == kind:
                return a
        return None

    def artifact(self, kind: str) -> Artifact | None:
        for a in self.artifacts:
            if a.kind == kind:
                return a
        return None

    @property
    def verdict(self) -> str:
        """status, or "flagged" for a run that finished but whose figures cannot be right (problems)."""
        return "flagged" if self.status == "ok" and self.problems else self.status

    @property
    def reason(self) -> str | None:
        """Why the run is not a result: its problems when flagged, else its error."""
        return "; ".join(self.problems) if self.verdict == "flagged" else self.error

    @property
    def technique_label(self) -> str:
        return "+".join(self.techniques) if self.techniques else "float"

    # ---- JSON -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["target"] = self.target.as_dict()
        for stats, out in [(self.weights, d["weights"]), *zip(self.stage_weights, d["stage_weights"])]:
            if stats is not None:  # derived totals help readers of the raw JSON
                out["params"] = stats.params
                out["sparsity"] = stats.sparsity
                out["max_unique_values"] = stats.max_unique_values
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MetricsRecord":
        version = d.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(f"schema_version {version!r}, expected {SCHEMA_VERSION}")
        d = dict(d)
        try:
            d["target"] = Target.from_dict(d["target"])
        except ConfigError as exc:  # e.g. an accelerator this version does not know
            raise ValueError(f"target: {exc}") from None
        d["accuracy"] = [AccuracyResult(**a) for a in d.get("accuracy", [])]
        if d.get("weights") is not None:
            d["weights"] = _weight_stats(d["weights"])
        d["stage_weights"] = [_weight_stats(w) for w in d.get("stage_weights", [])]
        d["artifacts"] = [Artifact(**a) for a in d.get("artifacts", [])]
        if d.get("vela") is not None:
            v = dict(d["vela"])
            v["per_layer"] = [LayerEstimate(**l) for l in v.get("per_layer", [])]
            d["vela"] = VelaEstimate(**_known(VelaEstimate, v))
        if d.get("fvp") is not None:
            d["fvp"] = FvpMeasurement(**_known(FvpMeasurement, d["fvp"]))
        if d.get("memory") is not None:
            d["memory"] = ArtifactMemory(**_known(ArtifactMemory, d["memory"]))
        return cls(**_known(cls, d))

    def write(self, run_dir: str | Path) -> Path:
        """The one writer of metrics.json (runs, measure, failed compare cells, fvp import): atomic."""
        return write_json_atomic(Path(run_dir) / RECORD_NAME, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> "MetricsRecord":
        path = Path(path)
        if path.is_dir():
            path = path / RECORD_NAME
        return read_document(path, cls.from_dict, "metrics record")


def read_document(path: Path, parse: Callable[[Any], T], what: str) -> T:
    """A JSON document of ours (record, advice) parsed by `parse`; one ArtifactError line if it is
    missing or not ours."""
    try:
        return parse(json.loads(path.read_text()))
    except FileNotFoundError:
        raise ArtifactError(str(path), f"no {what} here") from None
    except (ValueError, TypeError, KeyError) as exc:
        raise ArtifactError(str(path), f"not a condition {what} ({exc})") from None


def _weight_stats(w: dict[str, Any]) -> WeightStats:
    return WeightStats(layers=[LayerWeights(**_known(LayerWeights, l)) for l in w.get("layers", [])],
                       source=w.get("source", "measured"), stage=w.get("stage", ""))


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def config_hash(config: dict[str, Any]) -> str:
    """Short stable hash of a run's full configuration (keys sorted), used in folder names and resume."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:10]


@functools.cache
def installed_version(dist: str) -> str | None:
    """A distribution's installed version from its metadata (no import of the package); None when absent."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools a figure depends on (no imports of the heavy packages)."""
    dists = ("condition", "tensorflow", "tf-keras", "tensorflow-model-optimization", "torch", "executorch", "torchao",
             "ethos-u-vela", "tosa-tools", "torch-pruning")
    return {dist: version for dist in dists if (version := installed_version(dist)) is not None}
