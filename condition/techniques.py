"""Framework-free technique configs shared by both frontends, so `tf prune` and `torch prune`
mean exactly the same thing. Each frontend has one module per technique with
`apply(model, config, data) -> new model`."""
from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

from condition.errors import ConfigError


class Structure(str, enum.Enum):
    UNSTRUCTURED = "unstructured"
    TWO_FOUR = "2:4"


class Schedule(str, enum.Enum):
    CONSTANT = "constant"  # prune to the target at once, then fine-tune (the seed's one-shot)
    POLYNOMIAL = "polynomial"  # ramp sparsity up during fine-tuning (tfmot PolynomialDecay)


class CentroidInit(str, enum.Enum):
    KMEANS_PLUS_PLUS = "kmeans++"
    LINEAR = "linear"
    DENSITY = "density"
    RANDOM = "random"


@dataclass(frozen=True)
class PostTrainingQuantConfig:
    calibration_images: int = 200  # representative images for int8 calibration

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise ConfigError("--calibration-images", self.calibration_images, "must be at least 1")


@dataclass(frozen=True)
class PruneConfig:
    sparsity: float = 0.95
    structure: Structure = Structure.UNSTRUCTURED
    schedule: Schedule = Schedule.CONSTANT
    fine_tune_epochs: int = 1  # retraining after pruning (the seed retrains one epoch)

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", Structure(self.structure))
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError("--sparsity", self.sparsity, "must be in [0, 1)", "e.g. 0.95 for 95 % zeros")
        if self.structure is Structure.TWO_FOUR and self.sparsity < 0.5:
            raise ConfigError("--sparsity", self.sparsity, "2:4 structure means at least 0.5", "use 0.5, or higher to prune further inside the 2:4 pattern")
        if self.fine_tune_epochs < 0:
            raise ConfigError("--fine-tune-epochs", self.fine_tune_epochs, "must be 0 or more")


@dataclass(frozen=True)
class ClusterConfig:
    clusters: int = 16
    centroid_init: CentroidInit = CentroidInit.KMEANS_PLUS_PLUS
    preserve_sparsity: bool = True  # keep zeros at zero (needed after prune; tfmot's sparsity-preserving clustering)
    fine_tune_epochs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "centroid_init", CentroidInit(self.centroid_init))
        if self.clusters < 2:
            raise ConfigError("--clusters", self.clusters, "must be at least 2", "16 is a common choice for int8")
        if self.clusters > 256:
            raise ConfigError("--clusters", self.clusters, "more than 256 clusters cannot be distinct int8 values")
        if self.fine_tune_epochs < 0:
            raise ConfigError("--fine-tune-epochs", self.fine_tune_epochs, "must be 0 or more")


@dataclass(frozen=True)
class QatConfig:
    fine_tune_epochs: int = 1
    preserve: bool = True  # keep sparsity/clusters of earlier steps (PQAT/CQAT/PCQAT)

    def __post_init__(self) -> None:
        if self.fine_tune_epochs < 0:
            raise ConfigError("--qat-epochs", self.fine_tune_epochs, "must be 0 or more")


CONFIG_TYPES: dict[str, type] = {
    "post-training-quant": PostTrainingQuantConfig,
    "prune": PruneConfig,
    "cluster": ClusterConfig,
    "qat": QatConfig,
}
# tfmot's collaborative-optimization order: prune → cluster → (QAT | PTQ).
CHAIN_ORDER = {"prune": 0, "cluster": 1, "qat": 2, "post-training-quant": 2}


def make_config(technique: str, options: dict[str, Any]) -> Any:
    cls = CONFIG_TYPES[technique]
    names = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in options.items() if k in names})


def config_options(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able options (enums as their values)."""
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(config).items()}


def check_chain(techniques: list[str]) -> None:
    """Reject chains outside prune → cluster → qat|post-training-quant, naming the fix."""
    if not techniques:
        raise ConfigError("technique chain", techniques, "is empty")
    if len(set(techniques)) != len(techniques):
        raise ConfigError("--then", " → ".join(techniques), "repeats a technique")
    if "qat" in techniques and "post-training-quant" in techniques:
        raise ConfigError("--then", " → ".join(techniques), "qat and post-training-quant both quantize", "keep one")
    order = [CHAIN_ORDER[t] for t in techniques]
    if order != sorted(order):
        wanted = sorted(techniques, key=CHAIN_ORDER.__getitem__)
        raise ConfigError("--then", " → ".join(techniques), "steps out of the collaborative-optimization order",
                          "did you mean " + " → ".join(wanted) + "?")
