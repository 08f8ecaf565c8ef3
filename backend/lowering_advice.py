"""What an existing .tflite would gain from the export rewrites `condition` applies to the models it
converts (frontends/tf/lowering.py), for `condition measure` and `condition advise`, which cannot
re-export a file: a global-average MEAN (Keras GlobalAveragePooling2D) that Vela lowers to a
DepthwiseConv2D + Mul, against the AVERAGE_POOL_2D of the same window that Vela runs as one AvgPool.

The gain is a Vela estimate, not a guess: the MEAN's rows in the model's own compile, against a one-op
int8 AVERAGE_POOL_2D .tflite of the same shape built here (no framework needed) and compiled for the same
Target.

    advice = mean_rewrites(read_tflite(model_tflite), estimate, target, work_dir)
    [a.note() for a in advice]

And a RESHAPE of the graph's input (a Keras Reshape((H, W, 1)) of an (H, W) input), for which Vela copies the
input first (a subgraph input cannot be aliased): its MemoryCopy's cycles, read from the same compile, are what
an (H, W, 1) input saves (`input_copies`). `lowering_notes` gives both kinds of note.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from condition.backend.metrics import VelaEstimate
from condition.backend.target import Target
from condition.backend.tflite_file import INT8, TensorSpec, TfliteGraph, read_tflite, write_one_op_tflite

MEAN = 40  # tflite BuiltinOperator.MEAN
AVERAGE_POOL_2D = 1
RESHAPE = 22
INT32 = 2  # tflite TensorType.INT32
# Vela's AVERAGE_POOL_2D limits for VALID padding (tflite_supported_operators.py)
MAX_POOL_HEIGHT, MAX_POOL_AREA = 256, 256 * 256


@dataclass(frozen=True)
class MeanRewrite:
    """One MEAN over height and width, what Vela spends on it now, and as an AvgPool."""

    tensor: str  # the MEAN's output tensor, which names its Vela rows (`…/Mean_intermediate`, `…/Mean`)
    height: int
    width: int
    channels: int
    cycles_now: int  # op cycles of the Vela rows the MEAN became (DepthwiseConv2D + Mul)
    operators_now: tuple[str, ...]
    cycles_as_avgpool: int  # op cycles of a one-op AVERAGE_POOL_2D of the same shape, same Target
    model_npu_cycles: int

    @property
    def gain_cycles(self) -> int:
        return self.cycles_now - self.cycles_as_avgpool

    def note(self) -> str:
        share = self.gain_cycles / self.model_npu_cycles if self.model_npu_cycles else 0.0
        return (f"lowering: MEAN {self.tensor} ({self.height}×{self.width}×{self.channels}) costs {self.cycles_now:,} cycles as "
                f"Vela's {' + '.join(self.operators_now)}; as AVERAGE_POOL_2D it would cost {self.cycles_as_avgpool:,} "
                f"(Vela estimate of the op alone): {self.gain_cycles:,} cycles less, {share:.1%} of the model's NPU cycles. "
                "Re-export it with AveragePooling2D + Flatten in place of GlobalAveragePooling2D (condition does this for the "
                "Keras models it converts).")


@dataclass(frozen=True)
class InputCopy:
    """A graph input that a RESHAPE reads first, and the MemoryCopy of it Vela compiled."""

    tensor: str  # the graph input; Vela names the copy's row `<tensor>_copy`
    shape: tuple[int, ...]
    reshaped: tuple[int, ...]
    cycles: int  # op cycles of the MemoryCopy row(s)
    model_npu_cycles: int

    def note(self) -> str:
        share = self.cycles / self.model_npu_cycles if self.model_npu_cycles else 0.0
        dims = lambda shape: "×".join(map(str, shape[1:]))
        return (f"lowering: the graph input {self.tensor} ({dims(self.shape)}) is reshaped to {dims(self.reshaped)} first, "
                f"and Vela copies it for that (MemoryCopy, {self.cycles:,} cycles, {share:.1%} of the model's NPU cycles: "
                f"a graph input cannot be aliased). Export the model with a {dims(self.reshaped)} input (reshape the images "
                "before inference) to save them (condition's built-in CNNs take (H, W, 1) images for this reason).")


def input_copies(graph: TfliteGraph, estimate: VelaEstimate) -> list[InputCopy]:
    """Each graph input a RESHAPE reads that Vela copied, with the copy's cycles from `estimate` (the file's own
    Vela estimate, rows named as Vela wrote them)."""
    produced = {i for op in graph.operators for i in op.outputs}
    found = []
    for op in graph.operators:
        if op.builtin_code != RESHAPE or not op.inputs or not op.outputs or op.inputs[0] < 0:
            continue
        x = graph.tensors[op.inputs[0]]
        if op.inputs[0] in produced or x.data is not None:
            continue  # not a graph input
        rows = [r for r in estimate.per_layer
                if r.target == "NPU" and r.operator == "MemoryCopy" and r.name == x.name + "_copy"]
        if rows:
            found.append(InputCopy(x.name, x.shape, graph.tensors[op.outputs[0]].shape, sum(r.op_cycles for r in rows),
                                   estimate.npu_cycles))
    return found


def lowering_notes(tflite: str | Path, estimate: VelaEstimate, target: Target, work: str | Path) -> list[str]:
    """The notes of `condition measure` and `advise` on an existing .tflite: each MEAN that would run faster as an
    AvgPool, each graph input Vela copies for a RESHAPE."""
    graph = read_tflite(tflite)
    return [r.note() for r in mean_rewrites(graph, estimate, target, work)] + [c.note() for c in input_copies(graph, estimate)]


def mean_pools(graph: TfliteGraph) -> list[tuple[str, int, int, int]]:
    """(output tensor, H, W, C) of each int8 MEAN over axes 1 and 2 of an NHWC tensor that Vela's AvgPool can take."""
    found = []
    for op in graph.operators:
        if op.builtin_code != MEAN or len(op.inputs) < 2 or not op.outputs:
            continue
        x, axes = graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]]
        if x.type != INT8 or len(x.shape) != 4 or axes.data is None or axes.type != INT32:
            continue
        _, h, w, c = x.shape
        if sorted(int(a) % 4 for a in axes.data.view(np.int32)) != [1, 2]:
            continue
        if h <= MAX_POOL_HEIGHT and h * w <= MAX_POOL_AREA:
            found.append((graph.tensors[op.outputs[0]].name, h, w, c))
    return found


def mean_rewrites(graph: TfliteGraph, estimate: VelaEstimate, target: Target, work: str | Path) -> list[MeanRewrite]:
    """Each rewritable MEAN of the `graph` with its estimated gain; `estimate` is the file's own Vela estimate
    with the rows named as Vela wrote them (after the output tensors)."""
    from condition.backend.vela import compile_tflite

    out = []
    for i, (tensor, h, w, c) in enumerate(mean_pools(graph)):
        rows = [r for r in estimate.per_layer if r.target == "NPU" and (r.name == tensor or r.name.startswith(tensor + "_"))]
        if not rows:
            continue
        pool = avgpool_tflite(Path(work) / f"mean{i}_as_avgpool.tflite", h, w, c)
        pooled = compile_tflite(pool, target, Path(work) / f"mean{i}_as_avgpool_vela").estimate
        out.append(MeanRewrite(tensor, h, w, c, sum(r.op_cycles for r in rows), tuple(r.operator for r in rows),
                               sum(r.op_cycles for r in pooled.per_layer if r.operator == "AvgPool"), estimate.npu_cycles))
    return out


def pool_options(height: int, width: int) -> tuple[int, Any]:
    """(BuiltinOptions type, builder) of an AVERAGE_POOL_2D over the whole H×W window (VALID, stride 1)."""
    from ethosu.vela.tflite import BuiltinOptions, Padding, Pool2DOptions

    def build(b: Any) -> int:
        Pool2DOptions.Pool2DOptionsStart(b)
        Pool2DOptions.Pool2DOptionsAddPadding(b, Padding.Padding.VALID)
        Pool2DOptions.Pool2DOptionsAddStrideW(b, 1)
        Pool2DOptions.Pool2DOptionsAddStrideH(b, 1)
        Pool2DOptions.Pool2DOptionsAddFilterWidth(b, width)
        Pool2DOptions.Pool2DOptionsAddFilterHeight(b, height)
        return Pool2DOptions.Pool2DOptionsEnd(b)

    return BuiltinOptions.BuiltinOptions.Pool2DOptions, build


def avgpool_tflite(path: Path, height: int, width: int, channels: int) -> Path:
    """A .tflite of one int8 AVERAGE_POOL_2D (VALID, stride 1, the whole H×W window), input and output
    quantized alike as the converter requires: only its shape matters for Vela's cycles."""
    quant = dict(scales=(0.05,), zero_points=(0,))
    tensors = [TensorSpec("input", (1, height, width, channels), **quant), TensorSpec("output", (1, 1, 1, channels), **quant)]
    return write_one_op_tflite(path, tensors, AVERAGE_POOL_2D, (0,), (1,), pool_options(height, width))
