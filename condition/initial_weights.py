"""Identical starting weights for the built-in models on both frontends.

Keras starts Dense/Conv layers with Glorot-uniform kernels and zero biases, torch with
Kaiming-uniform weights and biases: the same network then trains to a different float model
and the tf/torch comparison mixes framework effects with initialisation luck. Both frontends
draw their initial weights here, from one numpy generator, so at the same --seed `tf` and
`torch` start from the very same MLP (for the CNN, the same values; its first dense layer
reads the flattened feature map in each framework's own channel order). The BatchNorm CNNs
(`ds-cnn`, `mobilenet-v2`) end in global average pooling, so they compute the same function too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from condition.models import CONVNETS, ConvNetSpec, convnet_spec

INIT_SCHEME = "shared-glorot-uniform-v1"  # part of float-cache keys: change it when the scheme changes


@dataclass(frozen=True)
class LayerInit:
    """Kernel in Keras layout ((in, out) dense, (kh, kw, cin, cout) conv, (kh, kw, c, 1) depthwise)
    and a zero bias; a conv followed by BatchNorm has no bias, a BatchNorm layer no kernel."""

    kind: str  # "dense" | "conv" | "depthwise" | "batchnorm"
    kernel: np.ndarray | None
    bias: np.ndarray | None
    name: str = ""  # the layer's name on both frontends (BatchNorm CNNs); "" = match by position
    channels: int = 0  # batchnorm

    def batchnorm(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(gamma, beta, moving mean, moving variance) = (1, 0, 0, 1): BatchNorm starts as identity."""
        one, zero = np.ones(self.channels, np.float32), np.zeros(self.channels, np.float32)
        return one, zero, zero.copy(), one.copy()


def _glorot(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _dense(rng: np.random.Generator, n_in: int, n_out: int) -> LayerInit:
    return LayerInit("dense", _glorot(rng, (n_in, n_out), n_in, n_out), np.zeros(n_out, np.float32))


def _conv(rng: np.random.Generator, k: int, c_in: int, c_out: int) -> LayerInit:
    return LayerInit("conv", _glorot(rng, (k, k, c_in, c_out), k * k * c_in, k * k * c_out), np.zeros(c_out, np.float32))


def _convnet(rng: np.random.Generator, spec: ConvNetSpec) -> list[LayerInit]:
    """Conv kernels Glorot-uniform on their true fans (a depthwise kernel: k·k in, k·k out per
    channel), BatchNorm as identity, the dense `fc` with a zero bias."""
    layers, c = [], spec.channels
    for conv in spec.convs():
        k = conv.kernel
        if conv.kind == "depthwise":
            layers.append(LayerInit("depthwise", _glorot(rng, (k, k, c, 1), k * k, k * k), None, conv.name))
        else:
            layers.append(LayerInit("conv", _glorot(rng, (k, k, c, conv.filters), k * k * c, k * k * conv.filters), None, conv.name))
            c = conv.filters
        layers.append(LayerInit("batchnorm", None, None, f"{conv.name}_bn", channels=c))
    fc = _dense(rng, c, spec.classes)
    return [*layers, LayerInit("dense", fc.kernel, fc.bias, "fc")]


def initial_weights(model: str, input_shape: tuple[int, ...], num_classes: int, seed: int) -> list[LayerInit]:
    """The built-in model's layers in forward order, as both frontends must load them."""
    rng = np.random.default_rng(seed)
    if model in CONVNETS:
        return _convnet(rng, convnet_spec(model, input_shape, num_classes))
    h, w = input_shape[0], input_shape[1]
    c = input_shape[2] if len(input_shape) == 3 else 1
    if model == "mlp":
        return [_dense(rng, h * w * c, 512), _dense(rng, 512, 256), _dense(rng, 256, num_classes)]
    if model == "cnn":
        return [_conv(rng, 3, c, 16), _conv(rng, 3, 16, 32), _dense(rng, 32 * (h // 4) * (w // 4), 64), _dense(rng, 64, num_classes)]
    raise ValueError(f"no shared initialisation for model {model!r}")
