"""Runs delegated TOSA graphs on chunks of int8 inputs with the TOSA reference model.

Kept free of torch so pool workers start quickly; the reference model prints a version note
for every run, which goes to /dev/null here. The graphs of one evaluation are handed over once
(`load`, the pool initializer) and named by delegation tag in each task.
"""
from __future__ import annotations

import os

import numpy as np

_GRAPHS: dict[str, bytes] = {}
_NUMPY_GRAPHS: dict[str, object] = {}  # tosa_numpy's parse of _GRAPHS, by tag


# TOSA ops for which the batch is axis 0 of every non-constant operand and result, images never mix,
# and constant operands broadcast over it: a graph of only these, built for one image, computes the
# same per image for B images once its activation shapes (and RESHAPE targets) say B.
BATCH_SAFE_OPS = frozenset({"CONST", "CONST_SHAPE", "CONV2D", "DEPTHWISE_CONV2D", "AVG_POOL2D", "MAX_POOL2D", "RESCALE",
                            "CLAMP", "ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM", "TABLE", "RESHAPE", "TRANSPOSE", "CAST",
                            "IDENTITY", "PAD"})


def rebatch(graph: bytes, batch: int) -> bytes | None:
    """The batch-1 TOSA graph with its batch axis set to `batch`, patched in place (the buffer
    keeps its layout: only shape integers change), or None when the graph holds an op outside
    BATCH_SAFE_OPS or a shape whose leading axis is not that single image. The same graph, so the
    same arithmetic: no second lowering. The evaluator still checks its first images against the
    unpatched graph."""
    from tosa import Op, TosaGraph, TransposeAttribute

    op_names = {v: k for k, v in vars(Op.Op).items() if not k.startswith("_")}
    buf = bytearray(graph)
    root = TosaGraph.TosaGraph.GetRootAs(buf, 0)
    for r in range(root.RegionsLength()):
        region = root.Regions(r)
        for b in range(region.BlocksLength()):
            block = region.Blocks(b)
            constant, reshape_targets, pads = set(), set(), set()
            for i in range(block.OperatorsLength()):
                op = block.Operators(i)
                name = op_names.get(op.Op())
                if name not in BATCH_SAFE_OPS:
                    return None
                if name in ("CONST", "CONST_SHAPE"):
                    constant.update(op.Outputs(j) for j in range(op.OutputsLength()))
                elif name == "RESHAPE":
                    reshape_targets.add(op.Inputs(1))
                elif name == "PAD":
                    pads.add(op.Inputs(1))
                elif name == "TRANSPOSE":
                    table = op.Attribute()
                    attribute = TransposeAttribute.TransposeAttribute()
                    attribute.Init(table.Bytes, table.Pos)
                    if attribute.PermsLength() == 0 or attribute.Perms(0) != 0:  # the batch must stay in front
                        return None
            for j in range(block.ShapesLength()):
                shape = block.Shapes(j)
                values = shape.DataAsNumpy().view(np.int64) if shape.DataLength() else np.zeros(0, np.int64)
                if shape.Name() in reshape_targets:
                    if len(values) == 0 or values[0] != 1:
                        return None
                    values[0] = batch
                elif shape.Name() in pads and (len(values) < 2 or values[0] != 0 or values[1] != 0):
                    return None  # padding the batch axis
            for j in range(block.TensorsLength()):
                tensor = block.Tensors(j)
                if tensor.Name() in constant:
                    continue
                shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else None
                if shape is None or shape[0] != 1:
                    return None
                shape[0] = batch
    return bytes(buf)


def silence() -> None:
    """The reference model writes to the process fds on every run."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def load(graphs: dict[str, bytes]) -> None:
    """The TOSA graphs of the evaluation about to run, by delegation tag (tags repeat across models)."""
    _GRAPHS.clear()
    _NUMPY_GRAPHS.clear()
    _GRAPHS.update(graphs)


def init_worker(graphs: dict[str, bytes]) -> None:
    """Pool initializer."""
    silence()
    load(graphs)


def run_chunk(tag: str, inputs: list[np.ndarray], batch: int = 1, engine: str = "reference") -> list[np.ndarray]:
    """inputs[k] holds input k for every image of the chunk (leading axis = image, at most `batch`
    images). A graph built for batch 1 (the .pte's) runs once per image; one built for `batch`
    images runs once, the chunk padded with zeros to `batch` and the padding dropped after.
    `engine` "numpy": the batch-1 graph on tosa_numpy, the whole chunk in one call."""
    import tosa_reference_model as reference_model

    graph = _GRAPHS[tag]
    n = len(inputs[0])
    if engine == "numpy":
        from condition.frontends.torch.tosa_numpy import TosaNumpyGraph

        if tag not in _NUMPY_GRAPHS:
            _NUMPY_GRAPHS[tag] = TosaNumpyGraph(graph)
        return [r.reshape(n, -1) for r in _NUMPY_GRAPHS[tag].run([np.ascontiguousarray(x) for x in inputs])]
    if batch > 1:
        calls = [[np.ascontiguousarray(np.concatenate([x, np.zeros((batch - n, *x.shape[1:]), x.dtype)]) if n < batch else x)
                  for x in inputs]]
    else:
        calls = [[np.ascontiguousarray(x[i:i + 1]) for x in inputs] for i in range(n)]
    per_call = batch if batch > 1 else 1
    outputs: list[list[np.ndarray]] = []
    for i, call in enumerate(calls):
        result, status = reference_model.run(graph, call)
        if status != reference_model.GraphStatus.TOSA_VALID:
            raise RuntimeError(f"TOSA reference model returned {status} for {'chunk' if batch > 1 else 'image'} {i}")
        outputs.append([r.reshape(per_call, -1) for r in result])  # one row per image, whatever the output rank
    if not outputs:
        return []
    return [np.concatenate([o[k] for o in outputs])[:n] for k in range(len(outputs[0]))]
