"""What a frontend gives the shared pipeline: a technique registry (torchao's `quantize_(model,
config)` way: the handler is found by the config's type) and a few framework-specific hooks.

    REGISTRY = TechniqueRegistry("tf")

    @REGISTRY.register(PruneConfig)
    def apply(model, config: PruneConfig, ctx: StepContext):
        ...

Framework-free: frontends import this module, never the other way round.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from condition.backend.metrics import AccuracyResult, ArtifactMemory, VelaEstimate, WeightStats
from condition.backend.target import Target
from condition.errors import ConditionError, ConfigError, StepError, one_line


def no_fraction(fraction: float | None = None) -> None:
    return None


def no_note(text: str) -> None:
    return None


def no_record(key: str, value: Any) -> None:
    return None


@dataclass(frozen=True)
class StepContext:
    """Everything a technique handler may need besides the model and its config."""

    data: Any  # the frontend's training/test data (tf TrainData, torch Dataset)
    target: Target
    seed: int
    done: tuple[Any, ...] = ()  # configs of the chain's earlier steps (PQAT/CQAT pick their scheme from them)
    progress: Callable[[float | None], None] = no_fraction  # fraction of this step done
    model_name: str = ""  # for error messages
    note: Callable[[str], None] = no_note  # a line for the record's notes (e.g. the layers a technique left out, and why)
    fine_tune: Any = None  # condition.fine_tuning.FineTune: every fine-tuning's schedule and distillation teacher
    record: Callable[[str, Any], None] = no_record  # a field of the metrics record (e.g. "channel_plan": ChannelPlan.as_dict)


Handler = Callable[[Any, Any, StepContext], Any]


class TechniqueRegistry:
    """One handler per technique config type for one frontend."""

    def __init__(self, frontend: str) -> None:
        self.frontend = frontend
        self._handlers: dict[type, Handler] = {}

    def register(self, config_type: type) -> Callable[[Handler], Handler]:
        def add(handler: Handler) -> Handler:
            self._handlers[config_type] = handler
            return handler

        return add

    def apply(self, model: Any, config: Any, ctx: StepContext) -> Any:
        """Run the handler of `config`'s type; a framework failure becomes a one-line StepError."""
        handler = self._handlers.get(type(config))
        if handler is None:
            raise ConfigError("technique", getattr(config, "name", type(config).__name__),
                              f"has no {self.frontend} implementation")
        try:
            return handler(model, config, ctx)
        except ConditionError:
            raise
        except Exception as exc:
            raise StepError(config.name, ctx.model_name, f"{type(exc).__name__}: {one_line(exc)}") from exc


@dataclass
class FloatModel:
    """The trained float model and the frontend's view of the data set."""

    model: Any
    data: Any
    cached: bool  # came from the float cache (same model, data, epochs, seed)
    notes: list[str] = field(default_factory=list)  # e.g. an NPU-friendly rewrite of the model (frontends/tf/lowering.py)


@dataclass
class Compiled:
    """An exported int8 artifact compiled for the Target, ready to evaluate."""

    artifacts: list[tuple[str, Path]]  # (kind, path) of every file worth keeping, e.g. ("tflite", ...)
    weights: WeightStats  # counted on the exported int8 tensors
    vela: VelaEstimate | None
    fvp_artifact: Path  # what an FVP runs (the Vela .tflite, or the .pte)
    evaluate: Callable[[Callable[[float | None], None]], AccuracyResult] | None  # bit-exact int8 accuracy
    notes: list[str] = field(default_factory=list)
    accuracy: list[AccuracyResult] = field(default_factory=list)  # measured on the way (e.g. torch fake-quant)
    memory: ArtifactMemory | None = None  # what the deployed artifact asks its runtime for, read from the file


class Frontend(Protocol):
    """A framework's side of one run; `condition.pipeline.run` calls these in order."""

    name: str
    registry: TechniqueRegistry

    def pin_threads(self, threads: int) -> None:
        """Compute with `threads` intra-op threads from here on (results depend on it)."""
        ...

    def float_model(self, config: Any, dataset: Any, progress: Any) -> FloatModel: ...

    def batchnorm_note(self, model: Any, trained: bool, train_images: int) -> str | None:
        """What was done to BatchNorm statistics when training ran (None: no BatchNorm, or no training)."""
        ...

    def float_accuracy(self, model: Any, data: Any) -> AccuracyResult: ...

    def stage_weights(self, model: Any, ctx: StepContext, work: Path) -> WeightStats:
        """Int8 weights of an intermediate chain stage, counted as the final export would."""
        ...

    def compile(self, model: Any, ctx: StepContext, work: Path) -> Compiled: ...

    def measure_artifact(self, path: Path, target: Target, dataset: str | None, eval_limit: int | None,
                         work: Path) -> dict[str, Any]:
        """Record fields (vela, weights, accuracy, artifacts, notes) of an artifact of this frontend's type."""
        ...
