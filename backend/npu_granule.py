"""What a layer costs on the Target's NPU at a given width, and the channel granule the NPU runs best, both
from Vela itself: channel pruning (condition/channel_plan.py) sizes layers with them.

A layer's cost is Vela's estimate of a one-op int8 .tflite of that shape (CONV_2D, DEPTHWISE_CONV_2D or
FULLY_CONNECTED, built here without a framework; random weights, since only shapes matter for cycles),
compiled for the run's Target. The granule is read off a sweep of output channels: the NPU computes a
block of output channels at a time, so cycles climb in steps, and a layer whose width ends just past a
step pays for a whole block (U55-128: the sweep's 1×1 conv costs 8 % more at 33 channels than at 32; a
DS-CNN-like net 21 %). The granule is that step, read off where the sweep's cycles jump (`granule_from_sweep`).
A whole network's cost (`network_cycles`) is Vela's estimate of its weighted layers chained in one .tflite.

    channel_granule(target)               # e.g. 8 on U55-128
    layer_cycles(geometry, target)        # Vela's NPU cycles of that one layer
    network_cycles(geometries, target)    # … of the layers together
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from condition.backend.target import Target
from condition.backend.tflite_file import OpSpec, TensorSpec, write_tflite
from condition.channel_plan import LayerGeometry

ADD, CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, RESHAPE = 0, 3, 4, 9, 22  # tflite BuiltinOperator
INT32 = 2  # tflite TensorType
# The granule sweep: a 1×1 conv over a 16×16 map of 64 channels (a mid-network pointwise conv), output
# channels 1…SWEEP_CHANNELS; candidate granules are powers of two up to MAX_GRANULE.
SWEEP_HW, SWEEP_IN, SWEEP_CHANNELS, MAX_GRANULE = 16, 64, 64, 32
JUMP = 0.05  # a step in the sweep: one more channel costs more than 5 % more cycles
ON_GRANULE = 0.8  # share of the steps that must fall just past a multiple of the granule (Vela's estimate has a few odd ones)


@dataclass(frozen=True)
class Granule:
    """The Target's channel granule and the sweep it was read from (to check it by hand)."""

    channels: int
    sweep: tuple[int, ...]  # Vela's cycles of the sweep's conv at 1, 2, … SWEEP_CHANNELS output channels


def _input_shape(g: LayerGeometry) -> tuple[int, ...]:
    return (1, g.in_channels) if g.kind == "fc" else (1, *g.input_hw, g.in_channels)


def _output_shape(g: LayerGeometry) -> tuple[int, ...]:
    if g.kind == "fc":
        return (1, g.out_channels)
    (h, w), (sh, sw) = g.input_hw, g.stride
    return (1, -(-h // sh), -(-w // sw), g.out_channels)


def _layer_op(g: LayerGeometry, tensors: list[TensorSpec], x: int, rng: np.random.Generator, tag: str) -> tuple[OpSpec, int]:
    """Append `g`'s weights, bias and output to `tensors`; (its operator reading tensor `x`, its output index)."""
    from ethosu.vela.tflite import (ActivationFunctionType, BuiltinOptions, Conv2DOptions, DepthwiseConv2DOptions,
                                    FullyConnectedOptions, Padding)

    (sh, sw), (kh, kw), c_in, c_out = g.stride, g.kernel, g.in_channels, g.out_channels
    if g.kind == "fc":
        weight_shape: tuple[int, ...] = (c_out, c_in)
    else:
        weight_shape = (1, kh, kw, c_out) if g.kind == "depthwise" else (c_out, kh, kw, c_in)
    weight_scales = tuple([0.01] * c_out)
    first = len(tensors)
    tensors += [TensorSpec(f"{tag}weights", weight_shape, data=rng.integers(-127, 128, weight_shape, dtype=np.int8),
                           scales=weight_scales, zero_points=tuple([0] * c_out)),
                TensorSpec(f"{tag}bias", (c_out,), type=INT32, data=np.zeros(c_out, dtype=np.int32),
                           scales=tuple(0.05 * s for s in weight_scales), zero_points=tuple([0] * c_out)),
                TensorSpec(f"{tag}output", _output_shape(g), scales=(0.05,), zero_points=(0,))]

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
    return OpSpec(code, (x, first, first + 1), (first + 2,), options), first + 2


def layer_tflite(path: Path, g: LayerGeometry) -> Path:
    """A one-op int8 .tflite of layer `g` ('same' padding, its stride), weights random but fixed."""
    tensors = [TensorSpec("input", _input_shape(g), scales=(0.05,), zero_points=(0,))]
    op, _ = _layer_op(g, tensors, 0, np.random.default_rng(0), "")
    return write_tflite(path, tensors, [op])


def network_tflite(path: Path, geometry: Sequence[LayerGeometry]) -> Path:
    """The weighted layers of a network as one int8 .tflite, in order: a layer reads the previous layer's output
    when the shapes agree (a chain of convs), else an input of its own (after pooling, or a skipped branch).
    A Dense reading a feature map's channels gets the global average pooling in front of it, a layer marked
    `residual` an ADD of its output and the earlier layer's after it. What the one-op table misses and Vela
    sees here: the weight fetch overlapping the previous layer's compute, feature maps staying in SRAM between
    layers, the pooling, the residual Adds."""
    rng = np.random.default_rng(0)
    tensors: list[TensorSpec] = []
    ops: list[OpSpec] = []
    outputs: list[int] = []  # each layer's output tensor (its Add's, when it has one)
    previous: int | None = None
    for i, g in enumerate(geometry):
        if previous is not None and g.kind == "fc" and len(tensors[previous].shape) == 4 and \
                tensors[previous].shape[3] == g.in_channels:  # global average pooling → Dense (the built-ins' head)
            previous = _global_pool(tensors, ops, previous, f"l{i}_")
        if previous is None or tensors[previous].shape != _input_shape(g):
            tensors.append(TensorSpec(f"input{i}", _input_shape(g), scales=(0.05,), zero_points=(0,)))
            previous = len(tensors) - 1
        op, previous = _layer_op(g, tensors, previous, rng, f"l{i}_")
        ops.append(op)
        if g.residual and tensors[outputs[i - g.residual]].shape == tensors[previous].shape:
            tensors.append(TensorSpec(f"l{i}_sum", tensors[previous].shape, scales=(0.05,), zero_points=(0,)))
            ops.append(OpSpec(ADD, (outputs[i - g.residual], previous), (len(tensors) - 1,)))
            previous = len(tensors) - 1
        outputs.append(previous)
    return write_tflite(path, tensors, ops)


def _global_pool(tensors: list[TensorSpec], ops: list[OpSpec], x: int, tag: str) -> int:
    """AVERAGE_POOL_2D over the whole H×W of tensor `x`, then RESHAPE to [1, C] (Keras AveragePooling2D + Flatten,
    torch's avg_pool2d + flatten); the reshaped tensor's index."""
    from condition.backend.lowering_advice import AVERAGE_POOL_2D, pool_options

    _, h, w, c = tensors[x].shape
    quant = dict(scales=(0.05,), zero_points=(0,))
    first = len(tensors)
    tensors += [TensorSpec(f"{tag}pooled", (1, 1, 1, c), **quant),
                TensorSpec(f"{tag}shape", (2,), type=INT32, data=np.array([1, c], dtype=np.int32)),
                TensorSpec(f"{tag}flat", (1, c), **quant)]
    ops += [OpSpec(AVERAGE_POOL_2D, (x,), (first,), pool_options(h, w)), OpSpec(RESHAPE, (first, first + 1), (first + 2,))]
    return first + 2


def _shape_only(g: LayerGeometry) -> LayerGeometry:
    """`g` without its names: the cache key of what Vela's estimate depends on (layers of one shape cost alike)."""
    from dataclasses import replace

    return replace(g, name="", in_group=None, out_group=None, in_per_channel=1)


def network_cycles(geometry: Sequence[LayerGeometry], target: Target) -> int:
    """Vela's NPU cycles of `network_tflite(geometry)` on `target`: a framework-free whole-network estimate."""
    return _network_cycles(tuple(_shape_only(g) for g in geometry), target)


@functools.lru_cache(maxsize=1024)
def _network_cycles(geometry: tuple[LayerGeometry, ...], target: Target) -> int:
    from condition.backend.vela import compile_tflite

    with tempfile.TemporaryDirectory(prefix="condition-network-cost-") as tmp:
        model = network_tflite(Path(tmp) / "network.tflite", geometry)
        return int(compile_tflite(model, target, Path(tmp) / "vela").estimate.npu_cycles)


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
    return _cycles(_shape_only(g), target)


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
    """From the sweep's NPU cycles (what a cycle target counts); where the weight fetch hides their steps (U65's
    NPU cycles of a small op barely move with its width), from its op cycles, the compute alone."""
    shapes = [LayerGeometry("", "conv", SWEEP_IN, c, (1, 1), (1, 1), (SWEEP_HW, SWEEP_HW)) for c in range(1, SWEEP_CHANNELS + 1)]
    sweep = [_cycles(g, target) for g in shapes]
    granule = granule_from_sweep(sweep)
    if granule == 1:
        sweep = [_cycles(g, target, op_cycles=True) for g in shapes]
        granule = granule_from_sweep(sweep)
    return Granule(granule, tuple(sweep))


def channel_granule(target: Target) -> int:
    """The output-channel step the Target's NPU computes in (see the module docstring), from Vela."""
    return granule_of(target).channels
