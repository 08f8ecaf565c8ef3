"""Runs one delegated TOSA graph on a chunk of int8 inputs with the TOSA reference model.

Kept free of torch so pool workers start quickly; the reference model prints a version note
for every run, which goes to /dev/null here.
"""
from __future__ import annotations

import os

import numpy as np

_GRAPHS: dict[str, bytes] = {}


def silence() -> None:
    """Pool initializer: the reference model writes to the process fds on every run."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)


def run_chunk(tosa_path: str, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """inputs[k] holds input k for every image of the chunk (leading axis = image); one
    reference-model run per image, because the NPU graph is compiled for batch 1."""
    import tosa_reference_model as reference_model

    graph = _GRAPHS.get(tosa_path)
    if graph is None:
        with open(tosa_path, "rb") as f:
            graph = _GRAPHS.setdefault(tosa_path, f.read())
    outputs: list[list[np.ndarray]] = []
    for i in range(len(inputs[0])):
        result, status = reference_model.run(graph, [np.ascontiguousarray(x[i:i + 1]) for x in inputs])
        if status != reference_model.GraphStatus.TOSA_VALID:
            raise RuntimeError(f"TOSA reference model returned {status} for image {i}")
        outputs.append(result)
    return [np.concatenate([o[k] for o in outputs]) for k in range(len(outputs[0]))] if outputs else []
