"""Runs delegated TOSA graphs on chunks of int8 inputs with the TOSA reference model.

Kept free of torch so pool workers start quickly; the reference model prints a version note
for every run, which goes to /dev/null here. The graphs of one evaluation are handed over once
(`load`, the pool initializer) and named by delegation tag in each task.
"""
from __future__ import annotations

import os

import numpy as np

_GRAPHS: dict[str, bytes] = {}


def silence() -> None:
    """The reference model writes to the process fds on every run."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def load(graphs: dict[str, bytes]) -> None:
    """The TOSA graphs of the evaluation about to run, by delegation tag (tags repeat across models)."""
    _GRAPHS.clear()
    _GRAPHS.update(graphs)


def init_worker(graphs: dict[str, bytes]) -> None:
    """Pool initializer."""
    silence()
    load(graphs)


def run_chunk(tag: str, inputs: list[np.ndarray], batch: int = 1) -> list[np.ndarray]:
    """inputs[k] holds input k for every image of the chunk (leading axis = image, at most `batch`
    images). A graph built for batch 1 (the .pte's) runs once per image; one built for `batch`
    images runs once, the chunk padded with zeros to `batch` and the padding dropped after."""
    import tosa_reference_model as reference_model

    graph = _GRAPHS[tag]
    n = len(inputs[0])
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
