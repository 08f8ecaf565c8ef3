"""The one list of techniques: framework-free configs shared by both frontends, so `tf prune` and
`torch prune` mean exactly the same thing.

A technique is a frozen config dataclass (torchao's way): its `name` is the CLI word, `chain_rank`
its place in tfmot's collaborative-optimization order, and each frontend registers one handler per
config type (`condition.frontend.TechniqueRegistry`). A chain is a tuple of config objects.
Adding a technique = one config class here (listed in `TECHNIQUES`) + one module per frontend.
"""
from __future__ import annotations

import difflib
import enum
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Sequence

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
    name: ClassVar[str] = "post-training-quant"
    chain_rank: ClassVar[int] = 2
    quantizes: ClassVar[bool] = True
    cli_options: ClassVar[dict[str, str]] = {"calibration_images": "calibration_images"}  # CLI option -> field

    calibration_images: int = 200  # representative images for int8 calibration

    def label(self) -> str:
        return self.name

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise ConfigError("--calibration-images", self.calibration_images, "must be at least 1")


@dataclass(frozen=True)
class PruneConfig:
    name: ClassVar[str] = "prune"
    chain_rank: ClassVar[int] = 0
    quantizes: ClassVar[bool] = False
    cli_options: ClassVar[dict[str, str]] = {o: o for o in ("sparsity", "structure", "schedule", "fine_tune_epochs")}

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

    def label(self) -> str:
        s = self.sparsity
        if self.structure is Structure.TWO_FOUR:
            part = "prune 2:4" if s <= 0.5 else f"prune 2:4 {s * 100:g} %"
        else:
            part = f"prune {s * 100:g} %"
        return part + (" (poly)" if self.schedule is Schedule.POLYNOMIAL else "")


@dataclass(frozen=True)
class ClusterConfig:
    name: ClassVar[str] = "cluster"
    chain_rank: ClassVar[int] = 1
    quantizes: ClassVar[bool] = False
    cli_options: ClassVar[dict[str, str]] = {o: o for o in ("clusters", "centroid_init", "preserve_sparsity", "fine_tune_epochs")}

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

    def label(self) -> str:
        return f"cluster {self.clusters}"


@dataclass(frozen=True)
class QatConfig:
    name: ClassVar[str] = "qat"
    chain_rank: ClassVar[int] = 2
    quantizes: ClassVar[bool] = True
    cli_options: ClassVar[dict[str, str]] = {"qat_epochs": "fine_tune_epochs", "preserve_sparsity": "preserve"}

    fine_tune_epochs: int = 1
    preserve: bool = True  # keep sparsity/clusters of earlier steps (PQAT/CQAT/PCQAT)

    def __post_init__(self) -> None:
        if self.fine_tune_epochs < 0:
            raise ConfigError("--qat-epochs", self.fine_tune_epochs, "must be 0 or more")


    def label(self) -> str:
        return self.name


TechniqueConfig = PostTrainingQuantConfig | QatConfig | PruneConfig | ClusterConfig
# The one list of techniques, in the order the CLI and reports show them.
TECHNIQUES: tuple[type, ...] = (PostTrainingQuantConfig, QatConfig, PruneConfig, ClusterConfig)
TECHNIQUE_NAMES: tuple[str, ...] = tuple(t.name for t in TECHNIQUES)


def config_type(name: str) -> type:
    """The config class of a technique name; a typo gets a 'did you mean'."""
    for t in TECHNIQUES:
        if t.name == name:
            return t
    close = difflib.get_close_matches(str(name), TECHNIQUE_NAMES, n=1)
    raise ConfigError("technique", name, "unknown technique",
                      f"did you mean {close[0]}?" if close else "choose one of " + ", ".join(TECHNIQUE_NAMES))


def make_config(technique: str, options: dict[str, Any]) -> TechniqueConfig:
    """A technique's config from its name and options (unknown option names are ignored)."""
    cls = config_type(technique)
    names = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in options.items() if k in names})


def config_options(config: Any) -> dict[str, Any]:
    """A config as plain JSON-able options (enums as their values)."""
    return {k: (v.value if isinstance(v, enum.Enum) else v) for k, v in asdict(config).items()}


def chain_label(chain: Sequence[Any]) -> str:
    """Short human label of a chain of configs, e.g. 'prune 95 % → cluster 16 → qat'."""
    return " → ".join(c.label() for c in chain) or "float"


def chain_slug(chain: Sequence[Any]) -> str:
    """The chain as a folder-name part, e.g. 'prune+cluster+qat'."""
    return "+".join(c.name for c in chain) or "float"


def check_chain(chain: Sequence[Any]) -> None:
    """Reject chains outside prune → cluster → qat|post-training-quant, naming the fix."""
    names = [c.name for c in chain]
    if not names:
        raise ConfigError("technique chain", names, "is empty")
    if len(set(names)) != len(names):
        raise ConfigError("--then", " → ".join(names), "repeats a technique")
    if sum(c.quantizes for c in chain) > 1:
        raise ConfigError("--then", " → ".join(names), "qat and post-training-quant both quantize", "keep one")
    ranks = [c.chain_rank for c in chain]
    if ranks != sorted(ranks):
        wanted = [c.name for c in sorted(chain, key=lambda c: c.chain_rank)]
        raise ConfigError("--then", " → ".join(names), "steps out of the collaborative-optimization order",
                          "did you mean " + " → ".join(wanted) + "?")
