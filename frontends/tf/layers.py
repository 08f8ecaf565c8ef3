"""The weighted layers of a Keras model as the prune and cluster policies see them
(`condition.techniques.LayerInfo`), read the way the torch side reads its modules, so both
frontends pick the same layers of the same network."""
from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from condition.frontends.tf import keras_modules
from condition.techniques import LayerInfo


def kernel_attr(layer: Any) -> str:
    """The name of the weight prune and cluster act on: depthwise_kernel, pointwise_kernel or kernel."""
    _, keras, _ = keras_modules()
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise_kernel"
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        return "pointwise_kernel"
    return "kernel"


def kernel_of(layer: Any) -> Any:
    """The weight variable prune and cluster act on (None for layers without one)."""
    return getattr(layer, kernel_attr(layer), None)


def layer_info(layer: Any) -> LayerInfo | None:
    """Kind, size and channels of a weighted layer; None for a layer without a kernel.
    Keras kernels are (kh, kw, in, out) for a conv, (kh, kw, channels, multiplier) for a depthwise
    conv and (in, out) for Dense."""
    _, keras, _ = keras_modules()
    L = keras.layers
    kernel = kernel_of(layer)
    if kernel is None or len(kernel.shape) < 2:
        return None
    shape = tuple(int(d) for d in kernel.shape)
    size = int(np.prod(shape))
    nonzero = int(np.count_nonzero(kernel.numpy())) if hasattr(kernel, "numpy") else None  # symbolic inside QAT's clone
    if isinstance(layer, L.DepthwiseConv2D):
        return LayerInfo(layer.name, "depthwise", size, shape[-2] * shape[-1], 1, nonzero=nonzero)
    if isinstance(layer, (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)):
        kind = "transpose_conv"
    elif isinstance(layer, (L.SeparableConv1D, L.SeparableConv2D)):
        kind = "separable_conv"
    elif isinstance(layer, (L.Conv1D, L.Conv2D, L.Conv3D)):
        kind = "conv" if getattr(layer, "groups", 1) == 1 else "grouped_conv"
    elif isinstance(layer, L.Dense):
        kind = "fc"
    else:
        kind = type(layer).__name__
    return LayerInfo(layer.name, kind, size, shape[-1], shape[-2], nonzero=nonzero)


def layer_infos(model: Any) -> dict[str, LayerInfo]:
    """Every weighted layer of `model`'s top level, by layer name, in model order (the last is
    marked: the classifier)."""
    infos = {}
    for layer in model.layers:
        info = layer_info(layer)
        if info is not None:
            infos[layer.name] = info
    if infos:  # the last one is the classifier
        name = list(infos)[-1]
        infos[name] = dataclasses.replace(infos[name], last=True)
    return infos
