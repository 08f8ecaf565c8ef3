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
import math
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Sequence

from condition.errors import ConfigError


class Structure(str, enum.Enum):
    UNSTRUCTURED = "unstructured"
    TWO_FOUR = "2:4"


class Scope(str, enum.Enum):
    LAYER = "layer"  # every pruned layer to the requested sparsity (tfmot's way): no layer is emptied
    GLOBAL = "global"  # one magnitude ranking over all pruned layers (the seed notebook's global L1)


class Schedule(str, enum.Enum):
    CONSTANT = "constant"  # prune to the target at once, then fine-tune (the seed's one-shot)
    POLYNOMIAL = "polynomial"  # ramp sparsity up during fine-tuning (tfmot PolynomialDecay)


class CentroidInit(str, enum.Enum):
    KMEANS_PLUS_PLUS = "kmeans++"
    LINEAR = "linear"
    DENSITY = "density"
    RANDOM = "random"


def _choice(kind: type[enum.Enum], value: Any, option: str) -> Any:
    """`value` as a member of `kind`; a recipe's typo is a one-line ConfigError listing the choices."""
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(option, value, "unknown value", "choose " + " or ".join(m.value for m in kind)) from None


# ---- which layers a technique conditions: one policy, read the same way on both frontends -----

LAYER_KINDS = ("conv", "depthwise", "fc")  # what prune and cluster condition; others are left out, named
# Unstructured pruning (PruneConfig.left_out says why): a layer needs at least MIN_PRUNE_FAN_IN weights
# per output channel and MIN_PRUNE_PARAMS weights in all; a conv reading at most IMAGE_CHANNELS channels
# is an image stem and is left out whatever its size.
MIN_PRUNE_FAN_IN = 16
MIN_PRUNE_PARAMS = 256
IMAGE_CHANNELS = 3
# Layer-scope pruning keeps at least this many weights per output channel (PruneConfig.layer_sparsity): a layer
# with few weights per channel is pruned less than asked rather than have channels emptied.
MIN_KEPT_PER_CHANNEL = 2
PRUNE_POLICY_VERSION = 2  # part of a prune run's identity: raise when left_out or layer_sparsity changes


@dataclass(frozen=True)
class LayerInfo:
    """A weighted layer as the prune and cluster policies see it. Each frontend reads it from its
    model's layers before the technique, and again from the exported int8 tensors for the record,
    so both sides (and the record) name the same layers.

    kind: "conv" | "depthwise" | "fc", or what else the layer is ("transpose_conv", "other", ...).
    in_channels: input channels seen by one output channel (the axis 2:4 groups run along).
    last: the model's last weighted layer (the classifier: its outputs are the class scores).
    """

    name: str
    kind: str
    params: int
    out_channels: int
    in_channels: int
    last: bool = False
    nonzero: int | None = None  # non-zero weights (None: not counted), what sparsity-preserving clustering shares

    @property
    def fan_in(self) -> int:
        """Weights per output channel (kh·kw·in for a conv, kh·kw for a depthwise conv)."""
        return self.params // max(self.out_channels, 1)


@dataclass(frozen=True)
class PostTrainingQuantConfig:
    name: ClassVar[str] = "post-training-quant"
    abbreviation: ClassVar[str] = "PTQ"  # in plot point labels
    chain_rank: ClassVar[int] = 2
    quantizes: ClassVar[bool] = True
    cli_options: ClassVar[dict[str, str]] = {"calibration_images": "calibration_images"}  # CLI option -> field

    calibration_images: int = 200  # representative images for int8 calibration

    def label(self) -> str:
        return self.name

    def __post_init__(self) -> None:
        if self.calibration_images < 1:
            raise ConfigError("--calibration-images", self.calibration_images, "must be at least 1")


# Prune's fine-tuning epochs when not given (PruneConfig.epochs_for): from AUTO_SPARSITY up, enough epochs for
# AUTO_STEPS_AT_90 · 0.1 / (1 − sparsity) optimizer steps of 128 images (280 at 0.9: the 3 epochs of 12,000 images
# that recovered ds-cnn; twice that at 0.95, where 280 steps still lost up to 17 points on mobilenet-v2)
AUTO_SPARSITY = 0.8
AUTO_STEPS_AT_90 = 280
AUTO_MAX_EPOCHS = 8


@dataclass(frozen=True)
class PruneConfig:
    name: ClassVar[str] = "prune"
    abbreviation: ClassVar[str] = "P"
    chain_rank: ClassVar[int] = 0
    quantizes: ClassVar[bool] = False
    cli_options: ClassVar[dict[str, str]] = {o: o for o in ("sparsity", "structure", "schedule", "fine_tune_epochs", "scope")}

    sparsity: float = 0.95
    structure: Structure = Structure.UNSTRUCTURED
    schedule: Schedule = Schedule.CONSTANT
    fine_tune_epochs: int | None = None  # retraining after pruning; None: chosen from the sparsity (`epochs_for`)
    scope: Scope = Scope.LAYER

    def __post_init__(self) -> None:
        object.__setattr__(self, "structure", _choice(Structure, self.structure, "--structure"))
        object.__setattr__(self, "schedule", _choice(Schedule, self.schedule, "--schedule"))
        object.__setattr__(self, "scope", _choice(Scope, self.scope, "--scope"))
        if not 0.0 <= self.sparsity < 1.0:
            raise ConfigError("--sparsity", self.sparsity, "must be in [0, 1)", "e.g. 0.95 for 95 % zeros")
        if self.structure is Structure.TWO_FOUR and self.sparsity < 0.5:
            raise ConfigError("--sparsity", self.sparsity, "2:4 structure means at least 0.5",
                              "use 0.5, or higher to prune further inside the 2:4 pattern")
        if self.fine_tune_epochs is not None and self.fine_tune_epochs < 0:
            raise ConfigError("--fine-tune-epochs", self.fine_tune_epochs, "must be 0 or more")

    def epochs_for(self, steps_per_epoch: int) -> int:
        """The fine-tuning epochs: as given, else 1 below AUTO_SPARSITY and, from it up, enough epochs for
        `auto_steps` optimizer steps (at most AUTO_MAX_EPOCHS). Recovery follows the steps, not the epochs:
        ds-cnn prune 0.9 on 12,000 images (94 steps an epoch), 1 epoch lost 4.3 (tf) and 5.4 (torch) points
        of int8 accuracy, 3 epochs 0.0 and 1.0 (bench/results/recovery.md); on all 60,000 images one epoch
        is 469 steps, so prune 0.9 of the seed MLP keeps its one epoch (0.95: 2)."""
        if self.fine_tune_epochs is not None:
            return self.fine_tune_epochs
        if self.sparsity < AUTO_SPARSITY:
            return 1
        return min(AUTO_MAX_EPOCHS, max(1, -(-self.auto_steps // max(steps_per_epoch, 1))))

    @property
    def auto_steps(self) -> int:
        """Fine-tuning steps a sparsity needs: the weights left shrink as 1 − sparsity, the steps grow as its inverse."""
        return round(AUTO_STEPS_AT_90 * 0.1 / (1.0 - self.sparsity))

    def label(self) -> str:
        s = self.sparsity
        if self.structure is Structure.TWO_FOUR:
            part = "prune 2:4" if s <= 0.5 else f"prune 2:4 {s * 100:g} %"
        else:
            part = f"prune {s * 100:g} %"
        return part + (" global" if self.scope is Scope.GLOBAL else "") + (" (poly)" if self.schedule is Schedule.POLYNOMIAL else "")

    @property
    def keeps_every_channel(self) -> bool:
        """Each pruned layer keeps at least one weight per output channel (condition/pruning.py), at
        the same layer sparsity: scope layer, unstructured, pruned at once (the constant schedule,
        or no fine-tuning). tfmot's polynomial ramp ranks each layer as a whole (the torch side
        ramps the same way), and scope global is the seed's one ranking."""
        return (self.scope is Scope.LAYER and self.structure is Structure.UNSTRUCTURED
                and (self.schedule is Schedule.CONSTANT or self.fine_tune_epochs == 0))

    def left_out(self, layer: LayerInfo) -> str | None:
        """Why `layer` is not pruned, or None when it is. The policy (both frontends, both scopes):

        - Conv and Dense layers only; never depthwise (one kh×kw filter per channel: at 0.9 about
          one weight each; Vela's 2:4 format excludes it).
        - Never the classifier (the last weighted layer: a few weights per class score; DS-CNN at
          0.9, 2 fine-tuning epochs: 0.39 accuracy with it pruned, 0.69 without, dense 0.74).
        - 2:4: input channels in multiples of 4 (the groups Vela skips); nothing else.
        - Unstructured: never an image stem (a conv reading 1 to IMAGE_CHANNELS channels: every
          later layer sees the image through it); at least MIN_PRUNE_FAN_IN (16) weights per
          output channel and at least MIN_PRUNE_PARAMS (256) weights in the layer.

        Measured on mobilenet-v2, fashion-mnist-32x32x3, tf, 1 epoch, 0.9 (dense int8 0.818,
        12,816 encoded bytes): with 32 weights per output channel only the two 1x1 project convs
        were pruned (0.83× dense bytes). At 16 the 16→128 head and the 16→96 expand conv join
        them (the head alone: +0.8 points; 0.48× bytes, -2.0 points with both); pruning the 16→8
        bottleneck too (128 weights, 13 left at 0.9) gave -5.8 points, hence the 256-weight floor;
        at 8 the 8→48 expand conv (under one weight per output) took accuracy to 0.10."""
        if layer.kind == "depthwise":
            return "depthwise"
        if layer.kind not in LAYER_KINDS:
            return f"{layer.kind} layer (only Conv and Dense are pruned)"
        if layer.last:
            return "the classifier (last weighted layer)"
        if self.structure is Structure.TWO_FOUR:
            if layer.in_channels % 4:
                return f"{layer.in_channels} input channels, not a multiple of 4"
            return None
        if layer.kind == "conv" and layer.in_channels <= IMAGE_CHANNELS:
            return f"image stem ({layer.in_channels} input channels)"
        if layer.fan_in < MIN_PRUNE_FAN_IN:
            return f"{layer.fan_in} weights per output channel (fewer than {MIN_PRUNE_FAN_IN})"
        if layer.params < MIN_PRUNE_PARAMS:
            return f"{layer.params} weights (fewer than {MIN_PRUNE_PARAMS})"
        return None

    def layer_sparsity(self, layer: LayerInfo) -> float:
        """The sparsity `layer` is pruned to: the request, but for scope `layer` at most what leaves
        MIN_KEPT_PER_CHANNEL weights per output channel (2:4: never below the pattern's 0.5).

        Measured on mobilenet-v2 (U85-128, 12,000 images, default options, bench/results/recovery.md):
        at 0.95 the 16→96 expand and 16→128 head convs (16 weights per output channel) keep 0.8 weights
        per channel, fewer weights than channels, so about a fifth of their channels are emptied:
        -9.5 to -21 points against dense int8 in 2 of 4 cells, and -6 to -16 for prune → cluster → qat."""
        if self.scope is Scope.GLOBAL:
            return self.sparsity
        cap = 1.0 - MIN_KEPT_PER_CHANNEL / max(layer.fan_in, 1)
        floor = 0.5 if self.structure is Structure.TWO_FOUR else 0.0
        return max(min(self.sparsity, cap), floor)


@dataclass(frozen=True)
class ClusterConfig:
    name: ClassVar[str] = "cluster"
    abbreviation: ClassVar[str] = "C"
    chain_rank: ClassVar[int] = 1
    quantizes: ClassVar[bool] = False
    cli_options: ClassVar[dict[str, str]] = {o: o for o in ("clusters", "centroid_init", "preserve_sparsity", "fine_tune_epochs")}

    clusters: int = 16
    centroid_init: CentroidInit = CentroidInit.KMEANS_PLUS_PLUS
    preserve_sparsity: bool = True  # keep zeros at zero (needed after prune; tfmot's sparsity-preserving clustering)
    fine_tune_epochs: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "centroid_init", _choice(CentroidInit, self.centroid_init, "--centroid-init"))
        if self.clusters < 2:
            raise ConfigError("--clusters", self.clusters, "must be at least 2", "16 is a common choice for int8")
        if self.clusters > 256:
            raise ConfigError("--clusters", self.clusters, "more than 256 clusters cannot be distinct int8 values")
        if self.fine_tune_epochs < 0:
            raise ConfigError("--fine-tune-epochs", self.fine_tune_epochs, "must be 0 or more")

    def label(self) -> str:
        return f"cluster {self.clusters}"

    def left_out(self, layer: LayerInfo) -> str | None:
        """Why `layer` is not clustered, or None: Conv, depthwise and Dense layers with more
        weights than clusters (a smaller layer already holds at most `clusters` values); keeping
        zeros, more non-zero weights than clusters (tfmot's k-means++ samples the non-zero ones:
        a small layer after channel-prune and prune 95 % has fewer)."""
        if layer.kind not in LAYER_KINDS:
            return f"{layer.kind} layer (only Conv, depthwise and Dense are clustered)"
        if layer.params <= self.clusters:
            return f"{layer.params} weights, not more than {self.clusters} clusters"
        if self.preserve_sparsity and layer.nonzero is not None and layer.nonzero <= self.clusters:
            return f"{layer.nonzero} non-zero weights, not more than {self.clusters} clusters"
        return None


@dataclass(frozen=True)
class QatConfig:
    name: ClassVar[str] = "qat"
    abbreviation: ClassVar[str] = "QAT"
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


# channel-prune's defaults. Neither --channel-sparsity nor --cycle-target given: a cycle target of 0.6, measured on
# ds-cnn and mobilenet-v2 (bench/results/channel.md, 3 fine-tuning epochs at 2e-3): 0.58–0.60× dense NPU cycles on
# U55-128 and U85-128 with accuracy from −0.8 to +3.3 points (16 of 16 cells within 1 point); 0.5 gave 0.47–0.51× with
# −1.9 to +2.3 (12 of 16), a share of 0.5 0.57–0.72× (U85 keeps 32 of 64 channels at nearly the cost of 48).
# DEFAULT_CHANNEL_SPARSITY is the share `advise` estimates channel pruning at.
DEFAULT_CYCLE_TARGET = 0.6
DEFAULT_CHANNEL_SPARSITY = 0.5
DEFAULT_CHANNEL_FINE_TUNE_EPOCHS = 3
# channel-prune re-trains a smaller network (prune holds zeros in the same one): at twice the float rate, constant,
# ds-cnn at 0.5× dense NPU cycles went from −1.1…−2.9 to −0.6…+1.9 points (both frontends, U55-128 and U85-128,
# 28×28×1 and 32×32×3); a cosine decay from 1e-3 lost 4.1…6.1 (the README's channel pruning section).
DEFAULT_CHANNEL_LEARNING_RATE = 2e-3


@dataclass(frozen=True)
class ChannelPruneConfig:
    """Remove whole output channels (with everything that reads or carries them), so layers do fewer MACs:
    the one technique here that makes a CNN faster on U55 and U65. Either a share of each layer's channels
    or a target fraction of the dense model's Vela NPU cycles; kept counts are whole granules of the
    Target's NPU (condition/channel_plan.py, condition/backend/npu_granule.py). It runs first in a chain."""

    name: ClassVar[str] = "channel-prune"
    abbreviation: ClassVar[str] = "CP"
    chain_rank: ClassVar[int] = -1
    quantizes: ClassVar[bool] = False
    cli_options: ClassVar[dict[str, str]] = {**{o: o for o in ("channel_sparsity", "cycle_target", "fine_tune_epochs")},
                                             "channel_learning_rate": "learning_rate"}

    channel_sparsity: float | None = None  # share of each prunable layer's output channels removed
    cycle_target: float | None = None  # or: reach this fraction of the dense model's NPU cycles
    fine_tune_epochs: int = DEFAULT_CHANNEL_FINE_TUNE_EPOCHS
    learning_rate: float = DEFAULT_CHANNEL_LEARNING_RATE  # the fine-tuning's Adam rate (constant)

    def __post_init__(self) -> None:
        if not 0.0 < self.learning_rate <= 1.0:
            raise ConfigError("learning_rate", self.learning_rate, "must be in (0, 1]", "e.g. 0.002")
        if self.channel_sparsity is not None and self.cycle_target is not None:
            raise ConfigError("--cycle-target", self.cycle_target, "cannot be combined with --channel-sparsity",
                              "give one: a share of channels, or a fraction of the dense NPU cycles")
        if self.channel_sparsity is None and self.cycle_target is None:
            object.__setattr__(self, "cycle_target", DEFAULT_CYCLE_TARGET)
        if self.channel_sparsity is not None and not 0.0 <= self.channel_sparsity < 1.0:
            raise ConfigError("--channel-sparsity", self.channel_sparsity, "must be in [0, 1)", "e.g. 0.5 to remove half of each layer's channels")
        if self.cycle_target is not None and not 0.0 < self.cycle_target <= 1.0:
            raise ConfigError("--cycle-target", self.cycle_target, "must be in (0, 1]", "e.g. 0.5 for half the dense NPU cycles")
        if self.fine_tune_epochs < 0:
            raise ConfigError("--fine-tune-epochs", self.fine_tune_epochs, "must be 0 or more")

    def label(self) -> str:
        if self.cycle_target is not None:
            return f"channel-prune {self.cycle_target:g}× cycles"
        return f"channel-prune {self.channel_sparsity * 100:g} %"


TechniqueConfig = PostTrainingQuantConfig | QatConfig | PruneConfig | ClusterConfig | ChannelPruneConfig
# The one list of techniques, in the order the CLI and reports show them.
TECHNIQUES: tuple[type, ...] = (PostTrainingQuantConfig, QatConfig, PruneConfig, ClusterConfig, ChannelPruneConfig)
TECHNIQUE_NAMES: tuple[str, ...] = tuple(t.name for t in TECHNIQUES)


def chain_order() -> str:
    """The order chains must follow, by `chain_rank`: 'prune → cluster → post-training-quant|qat'."""
    ranks = sorted({t.chain_rank for t in TECHNIQUES})
    return " → ".join("|".join(t.name for t in TECHNIQUES if t.chain_rank == r) for r in ranks)


def conditioning(chain: Sequence[Any], layer: LayerInfo) -> tuple[list[str], dict[str, str]]:
    """(techniques of `chain` that condition `layer`, {technique: why it is left out})."""
    done: list[str] = []
    skipped: dict[str, str] = {}
    for config in chain:
        policy = getattr(config, "left_out", None)
        if policy is None:
            continue
        reason = policy(layer)
        if reason is None:
            done.append(config.name)
        else:
            skipped[config.name] = reason
    return done, skipped


def plan_note(config: Any, layers: Sequence[LayerInfo], what: str = "") -> str:
    """One line for the record: the layers `config` conditions and those it leaves out, with why
    (the same words on both frontends), e.g. "prune 90 %: 5 of 10 layers; left out: stem (image
    stem (1 input channels)); block1_dw, block2_dw (depthwise)"."""
    done = [layer.name for layer in layers if config.left_out(layer) is None]
    by_reason: dict[str, list[str]] = {}
    for layer in layers:
        reason = config.left_out(layer)
        if reason is not None:
            by_reason.setdefault(reason, []).append(layer.name)
    line = f"{config.label()}{what}: {len(done)} of {len(layers)} layers"
    if by_reason:
        line += "; left out: " + "; ".join(f"{', '.join(names)} ({reason})" for reason, names in by_reason.items())
    if isinstance(config, PruneConfig):
        less = {layer.name: s for layer in layers if config.left_out(layer) is None
                and (s := config.layer_sparsity(layer)) < config.sparsity}
        if less:
            line += (f"; pruned less, to keep {MIN_KEPT_PER_CHANNEL} weights per output channel: "
                     + ", ".join(f"{name} {s * 100:.4g} %" for name, s in less.items()))
    return line


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


def exported_layer(name: str, kind: str, shape: Sequence[int], frontend: str, last: bool = False) -> LayerInfo:
    """The policies' view of an exported int8 weight of `shape` (read off the artifact, or off a
    record's LayerWeights). TFLite (tf) stores conv and fully connected weights as
    [out, (kh, kw,) in] and depthwise as [1, kh, kw, channels]; the torch graph as
    [out, in(, kh, kw)] (depthwise [channels, 1, kh, kw])."""
    dims = [int(d) for d in shape]
    size = math.prod(dims)
    if frontend == "tf":
        if kind == "depthwise":
            return LayerInfo(name, kind, size, dims[-1], 1, last)
        return LayerInfo(name, kind, size, dims[0], dims[-1], last)
    return LayerInfo(name, kind, size, dims[0], dims[1], last)


def prune_policy(layers: Sequence[Any], frontend: str, sparsity: float = 0.95) -> dict[str, str]:
    """Weighted layer name → why unstructured pruning (layer scope) would keep it dense; "" = pruned.
    `layers`: a record's LayerWeights, for advice on a model whose prune run has not happened yet."""
    config = PruneConfig(sparsity)
    return {l.name: config.left_out(exported_layer(l.name, l.kind or "other", l.shape, frontend, i == len(layers) - 1)) or ""
            for i, l in enumerate(layers)}
