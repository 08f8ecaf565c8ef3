"""What a layer costs on the Target's NPU at a given width, and the channel granule the NPU runs best, both
from Vela itself: channel pruning (condition/channel_plan.py) sizes layers with them.

A layer's cost is Vela's estimate of a one-op int8 .tflite of that shape (CONV_2D, DEPTHWISE_CONV_2D or
FULLY_CONNECTED, built here without a framework; random weights, since only shapes matter for cycles),
compiled for the run's Target. The granule is read off a sweep of output channels: the NPU computes a
block of output channels at a time, so cycles climb in steps, and a layer whose width ends just past a
step pays for a whole block (U55-128: 33 channels cost 21 % more than 32). The granule is that step, read
off where the sweep's cycles jump (`granule_from_sweep`).

    channel_granule(target)               # e.g. 16 on U55-128
    layer_cycles(geometry, target)        # Vela's NPU cycles of that one layer
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from condition.backend.target import Target
from condition.backend.tflite_file import TensorSpec, write_one_op_tflite
from condition.channel_plan import LayerGeometry

CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED = 3, 4, 9  # tflite BuiltinOperator
INT32 = 2  # tflite TensorType
# The granule sweep: a 1×1 conv over a 16×16 map of 64 channels (a mid-network pointwise conv), output
# channels 1…SWEEP_CHANNELS; candidate granules are powers of two up to MAX_GRANULE.
SWEEP_HW, SWEEP_IN, SWEEP_CHANNELS, MAX_GRANULE = 16, 64, 64, 32
JUMP = 0.05  # a step in the sweep: one more channel costs more than 5 % more cycles
ON_GRANULE = 0.8  # share of the steps that must fall just past a multiple of the granule (Vela's estimate has a few odd ones)


@dataclass(frozen=True)
class Granule:
    """The Target's channel granule and the sweep it was read from (for the record)."""

    channels: int
    sweep: tuple[int, ...]  # Vela's op cycles of the sweep's conv at 1, 2, … SWEEP_CHANNELS output channels


def layer_tflite(path: Path, g: LayerGeometry) -> Path:
    """A one-op int8 .tflite of layer `g` ('same' padding, its stride), weights random but fixed."""
    from ethosu.vela.tflite import (ActivationFunctionType, BuiltinOptions, Conv2DOptions, DepthwiseConv2DOptions,
                                    FullyConnectedOptions, Padding)

    rng = np.random.default_rng(0)
    h, w = g.input_hw
    sh, sw = g.stride
    kh, kw = g.kernel
    c_in, c_out = g.in_channels, g.out_channels
    quant = dict(scales=(0.05,), zero_points=(0,))
    if g.kind == "fc":
        x = TensorSpec("input", (1, c_in), **quant)
        weight_shape: tuple[int, ...] = (c_out, c_in)
        out_shape: tuple[int, ...] = (1, c_out)
    else:
        oh, ow = -(-h // sh), -(-w // sw)
        x = TensorSpec("input", (1, h, w, c_in), **quant)
        weight_shape = (1, kh, kw, c_out) if g.kind == "depthwise" else (c_out, kh, kw, c_in)
        out_shape = (1, oh, ow, c_out)
    weight_scales = tuple([0.01] * c_out)
    weights = TensorSpec("weights", weight_shape, data=rng.integers(-127, 128, weight_shape, dtype=np.int8),
                         scales=weight_scales, zero_points=tuple([0] * c_out))
    bias = TensorSpec("bias", (c_out,), type=INT32, data=np.zeros(c_out, dtype=np.int32),
                      scales=tuple(0.05 * s for s in weight_scales), zero_points=tuple([0] * c_out))
    out = TensorSpec("output", out_shape, scales=(0.1,), zero_points=(0,))

    def conv_options(b: Any) -> int:
        Conv2DOptions.Conv2DOptionsStart(b)
        Conv2DOptions.Conv2DOptionsAddPadding(b, Padding.Padding.SAME)
        Conv2DOptions.Conv2DOptionsAddStrideW(b, sw)
        Conv2DOptions.Conv2DOptionsAddStrideH(b, sh)
        Conv2DOptions.Conv2DOptionsAddFusedActivationFunction(b, ActivationFunctionType.ActivationFunctionType.RELU)
        return Conv2DOptions.Conv2DOptionsEnd(b)

    def depthwise_options(b: Any) -> int:
        DepthwiseConv2DOptions.DepthwiseConv2DOptionsStart(b)
        DepthwiseConv2DOptions.DepthwiseConv2DOptionsAddPadding(b, Padding.Padding.SAME)
        DepthwiseConv2DOptions.DepthwiseConv2DOptionsAddStrideW(b, sw)
        DepthwiseConv2DOptions.DepthwiseConv2DOptionsAddStrideH(b, sh)
        DepthwiseConv2DOptions.DepthwiseConv2DOptionsAddDepthMultiplier(b, 1)
        DepthwiseConv2DOptions.DepthwiseConv2DOptionsAddFusedActivationFunction(b, ActivationFunctionType.ActivationFunctionType.RELU)
        return DepthwiseConv2DOptions.DepthwiseConv2DOptionsEnd(b)

    def fc_options(b: Any) -> int:
        FullyConnectedOptions.FullyConnectedOptionsStart(b)
        FullyConnectedOptions.FullyConnectedOptionsAddFusedActivationFunction(b, ActivationFunctionType.ActivationFunctionType.RELU)
        return FullyConnectedOptions.FullyConnectedOptionsEnd(b)

    code, options = {"fc": (FULLY_CONNECTED, (BuiltinOptions.BuiltinOptions.FullyConnectedOptions, fc_options)),
                     "depthwise": (DEPTHWISE_CONV_2D, (BuiltinOptions.BuiltinOptions.DepthwiseConv2DOptions, depthwise_options))
                     }.get(g.kind, (CONV_2D, (BuiltinOptions.BuiltinOptions.Conv2DOptions, conv_options)))
    return write_one_op_tflite(path, [x, weights, bias, out], code, (0, 1, 2), (3,), options)


@functools.lru_cache(maxsize=4096)
def _cycles(g: LayerGeometry, target: Target, op_cycles: bool = False) -> int:
    """Vela's NPU cycles of the one-op model of `g`; with `op_cycles`, its per-layer op cycles (the compute
    alone: on U65 the weight DMA of a small op hides the compute steps the granule is read from)."""
    from condition.backend.vela import compile_tflite

    with tempfile.TemporaryDirectory(prefix="condition-layer-cost-") as tmp:
        model = layer_tflite(Path(tmp) / "layer.tflite", g)
        estimate = compile_tflite(model, target, Path(tmp) / "vela").estimate
    return int(estimate.npu_cycles) if not op_cycles else sum(r.op_cycles for r in estimate.per_layer)


def layer_cycles(g: LayerGeometry, target: Target) -> int:
    """Vela's NPU cycles of layer `g` alone on `target` (cached per shape and Target within a process)."""
    from dataclasses import replace

    return _cycles(replace(g, name="", in_group=None, out_group=None, in_per_channel=1), target)


def granule_from_sweep(cycles: list[int], max_granule: int = MAX_GRANULE) -> int:
    """The largest power of two g such that, from width g up, the sweep's cycles jump (by more than JUMP)
    just past multiples of g (at least ON_GRANULE of the jumps, and two of them): widths in between buy
    nothing, a width just past one pays a new block. Below g Vela may pick other block shapes (U55-128
    costs more at 7 channels than at 8), so jumps there do not count. 1 when no power of two fits."""
    jumps = [c for c in range(1, len(cycles)) if cycles[c] > cycles[c - 1] * (1.0 + JUMP)]  # width c → c + 1
    best, g = 1, 2
    while g <= max_granule:
        past = [c for c in jumps if c >= g]
        on = [c for c in past if c % g == 0]
        if len(on) >= 2 and len(on) >= ON_GRANULE * len(past):
            best = g
        g *= 2
    return best


@functools.lru_cache(maxsize=64)
def granule_of(target: Target) -> Granule:
    sweep = [_cycles(LayerGeometry("", "conv", SWEEP_IN, c, (1, 1), (1, 1), (SWEEP_HW, SWEEP_HW)), target, op_cycles=True)
             for c in range(1, SWEEP_CHANNELS + 1)]
    return Granule(granule_from_sweep(sweep), tuple(sweep))


def channel_granule(target: Target) -> int:
    """The output-channel step the Target's NPU computes in (see the module docstring), from Vela."""
    return granule_of(target).channels
