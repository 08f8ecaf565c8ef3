"""Names of the built-in models and how a `--model` value is read; the networks themselves are
defined per framework in frontends/<fw>/models.py with the same names and shapes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUILTIN_MODELS: dict[str, str] = {
    "mlp": "the seed notebook's MLP: flatten → 512 → 256 → classes (ReLU)",
    "cnn": "a small CNN: conv3x3(16)·pool → conv3x3(32)·pool → dense 64 → classes",
    "ds-cnn": "DS-CNN-S style: conv3x3/2(64)+BN+ReLU → 4 × (dw3x3+BN+ReLU, 1x1(64)+BN+ReLU), the first /2 → "
              "avg pool → classes",
    "mobilenet-v2": "MobileNetV2 ×0.35: conv3x3/2(16)+BN+ReLU6 → 3 inverted residuals (1x1 expand, dw3x3, 1x1 project, "
                    "Add where shapes allow) → 1x1(128)+BN+ReLU6 → avg pool → classes",
}
DEFAULT_MODEL = "mlp"


@dataclass(frozen=True)
class ModelSpec:
    """What `--model` named: a built-in name, a file, or (torch) a `module:factory`."""

    kind: str  # "builtin" | "file" | "factory"
    value: str


def parse_model_spec(value: str | None) -> ModelSpec:
    value = value or DEFAULT_MODEL
    if value in BUILTIN_MODELS:
        return ModelSpec("builtin", value)
    if Path(value).exists():
        return ModelSpec("file", value)
    if ":" in value and not value.startswith("/"):
        return ModelSpec("factory", value)
    return ModelSpec("file", value)  # the frontend reports "file not found" with the path


# ---- the BatchNorm CNNs, described once for both frontends ------------------------------------
# frontends/<fw>/models.py build these specs layer for layer, with the same layer names (`stem`,
# `block1_dw`, `block1_pw`, `head`, `fc`; BatchNorm `<conv>_bn`), so per-layer figures line up.

BN_MOMENTUM_TORCH = 0.1  # torch's default; the same update as Keras momentum 0.9 (Keras default 0.99 is too slow)
BN_EPSILON = 1e-5  # torch's default, and the value torchao's QAT conv-BN fusion assumes


@dataclass(frozen=True)
class ConvSpec:
    """One convolution followed by BatchNorm and an activation; no bias (BatchNorm has one)."""

    name: str
    kind: str  # "conv" | "depthwise"
    filters: int  # output channels (a depthwise conv keeps its input channels)
    kernel: int
    stride: int = 1
    activation: str | None = "relu"  # "relu" | "relu6" | None (MobileNetV2's linear bottleneck)


@dataclass(frozen=True)
class BlockSpec:
    """Convolutions in sequence; `residual` adds the block's input to its output (shapes equal)."""

    name: str
    convs: tuple[ConvSpec, ...]
    residual: bool = False


@dataclass(frozen=True)
class ConvNetSpec:
    """Blocks → global average pooling → dense `fc` (logits)."""

    blocks: tuple[BlockSpec, ...]
    channels: int  # input image channels
    classes: int

    def convs(self) -> list[ConvSpec]:
        return [conv for block in self.blocks for conv in block.convs]


def _ds_cnn(width: int = 64) -> list[BlockSpec]:
    """DS-CNN-S (Arm's KWS model zoo): 64 filters, a strided stem and four depthwise-separable blocks.
    The first block strides too: a 28×28 image leaves 14×14 positions after the stem (KWS: 25×5),
    and 64 channels there cost more than a 1-epoch training budget on 2 cores allows."""
    blocks = [BlockSpec("stem", (ConvSpec("stem", "conv", width, 3, stride=2),))]
    for i in range(1, 5):
        blocks.append(BlockSpec(f"block{i}", (ConvSpec(f"block{i}_dw", "depthwise", width, 3, stride=2 if i == 1 else 1),
                                              ConvSpec(f"block{i}_pw", "conv", width, 1))))
    return blocks


def _mobilenet_v2() -> list[BlockSpec]:
    """MobileNetV2 at width 0.35, shortened to three inverted-residual blocks, (expansion t, output
    channels, stride) each: the t=1 block has no expand conv (as in MobileNetV2), the third adds its
    input (an Add). Channels are Keras' `_make_divisible(c · 0.35, 8)`; head 1x1 conv 128."""
    blocks = [BlockSpec("stem", (ConvSpec("stem", "conv", 16, 3, stride=2, activation="relu6"),))]
    channels = 16
    for i, (t, out, stride) in enumerate([(1, 8, 1), (6, 16, 2), (6, 16, 1)], start=1):
        convs = [ConvSpec(f"block{i}_expand", "conv", channels * t, 1, activation="relu6")] if t > 1 else []
        convs += [ConvSpec(f"block{i}_dw", "depthwise", channels * t, 3, stride=stride, activation="relu6"),
                  ConvSpec(f"block{i}_project", "conv", out, 1, activation=None)]
        blocks.append(BlockSpec(f"block{i}", tuple(convs), residual=stride == 1 and out == channels))
        channels = out
    blocks.append(BlockSpec("head", (ConvSpec("head", "conv", 128, 1, activation="relu6"),)))
    return blocks


def convnet_spec(name: str, input_shape: tuple[int, ...], classes: int) -> ConvNetSpec:
    """The layers of built-in `ds-cnn` / `mobilenet-v2` for images of shape (H, W) or (H, W, C)."""
    channels = input_shape[2] if len(input_shape) == 3 else 1
    blocks = {"ds-cnn": _ds_cnn, "mobilenet-v2": _mobilenet_v2}[name]()
    return ConvNetSpec(tuple(blocks), channels, classes)


CONVNETS = ("ds-cnn", "mobilenet-v2")
# Part of the run identity of a built-in CNN and of tf's float-cache key: raise when a built-in CNN's graph changes.
# 2: tf's take (H, W, 1) images for a data set of (H, W) ones (a Keras Reshape of the graph's input cost a Vela
# copy, 944 NPU cycles of ds-cnn on U55-128: the whole tf/torch difference at 28×28).
CONVNET_GRAPH_VERSION = 2
