"""Accuracy of a lowered program: int8 by running its delegated TOSA graph with the TOSA
reference model (the bit-exact int8 arithmetic the NPU executes), and PT2E fake-quant by
running the converted graph in torch (float simulation of int8: close, not bit-exact).

The ops the partitioner left outside the delegate (the input quantize, the output dequantize,
and any op the NPU does not support) run in torch; only the delegate call is replaced, so the
figure covers the whole .pte graph. The NPU graph is compiled for batch 1, so images run one
per reference-model call, spread over a process pool.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from condition.backend.metrics import AccuracyResult
from condition.errors import StepError, one_line
from condition.frontends.torch.export import LoweredProgram

INT8_EVALUATOR = "tosa-reference-model int8 (delegated TOSA graph, bit-exact NPU arithmetic)"
FAKE_QUANT_EVALUATOR = "pt2e fake-quant (torch float simulation of the int8 graph)"
FLOAT_EVALUATOR = "torch float32"
CHUNK = 250  # images per reference-model task
BATCH = 2000  # images per pass through the CPU part of the graph
POOL_MIN_IMAGES = 500  # below this a process pool costs more than it saves


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1, int(os.environ.get("CONDITION_TOSA_WORKERS", "2"))))


class _DelegateRunner:
    """Stands in for executorch_call_delegate: runs the lowered module's TOSA file instead."""

    def __init__(self, tosa_by_tag: dict[str, Path], pool: concurrent.futures.Executor | None) -> None:
        self.tosa_by_tag = tosa_by_tag
        self.pool = pool

    def __call__(self, lowered: Any, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from condition.frontends.torch.tosa_worker import run_chunk

        tosa = str(self.tosa_by_tag[_tag_of(lowered)])
        inputs = [_to_numpy(a) for a in args]
        n = len(inputs[0])
        chunks = [[x[s:s + CHUNK] for x in inputs] for s in range(0, n, CHUNK)]
        if self.pool is not None and n >= POOL_MIN_IMAGES:
            results = list(self.pool.map(run_chunk, [tosa] * len(chunks), chunks))
        else:
            results = [run_chunk(tosa, c) for c in chunks]
        outs = [np.concatenate([r[k] for r in results]) for k in range(len(results[0]))]
        specs = [n.meta["val"] for n in lowered.original_module.graph_module.graph.output_node().args[0]]
        return tuple(torch.from_numpy(o).reshape(n, *spec.shape[1:]) for o, spec in zip(outs, specs))


def _tag_of(lowered: Any) -> str:
    for node in lowered.original_module.graph_module.graph.nodes:
        tag = node.meta.get("delegation_tag")
        if tag:
            return tag
    return ""


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    """Inputs in the dim order the TOSA graph was built with (NHWC tensors are permuted)."""
    order = t.dim_order()
    if len(order) == 4 and order == (0, 2, 3, 1):
        t = t.permute(0, 2, 3, 1)
    return t.detach().contiguous().numpy()


def _tosa_by_tag(lowered: LoweredProgram) -> dict[str, Path]:
    out = {}
    for path in lowered.tosa_files:  # output_<tag>_<tosa spec>.tosa
        tag = path.name[len("output_"):].split("_", 1)[0]
        out[tag] = path
    return out


def _interpret(graph_module: torch.fx.GraphModule, delegate: Callable, x: torch.Tensor) -> torch.Tensor:
    class Interpreter(torch.fx.Interpreter):
        def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
            if getattr(target, "__name__", "") == "executorch_call_delegate":
                return delegate(*args)
            return super().call_function(target, args, kwargs)

    out = Interpreter(graph_module).run(x)
    return out[0] if isinstance(out, (tuple, list)) else out


def int8_predictions(lowered: LoweredProgram, x: torch.Tensor, progress: Callable[[float], None] | None = None,
                     workers: int | None = None) -> np.ndarray:
    """Class index per image from the delegated graph run on the TOSA reference model."""
    from condition.backend.output_log import captured_output
    from condition.frontends.torch.tosa_worker import silence

    graph_module = lowered.eval_program.module()
    workers = default_workers() if workers is None else workers
    pool = None
    if workers > 1 and len(x) >= POOL_MIN_IMAGES:
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=silence,
        )
    delegate = _DelegateRunner(_tosa_by_tag(lowered), pool)
    preds: list[np.ndarray] = []
    try:
        for start in range(0, len(x), BATCH):
            batch = x[start:start + BATCH]
            with captured_output(Path(os.devnull)):  # the reference model prints a note per run
                try:
                    logits = _interpret(graph_module, delegate, batch)
                except Exception:  # CPU ops specialised on batch 1: go image by image
                    logits = torch.cat([_interpret(graph_module, delegate, batch[i:i + 1]) for i in range(len(batch))])
            preds.append(logits.argmax(-1).reshape(-1).numpy())
            if progress is not None:
                progress(min(1.0, (start + len(batch)) / len(x)))
    except Exception as exc:
        raise StepError("tosa reference model", str(lowered.tosa_files[0] if lowered.tosa_files else lowered.pte),
                        f"{type(exc).__name__}: {one_line(exc)}") from None
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)


def int8_accuracy(lowered: LoweredProgram, x: torch.Tensor, y: torch.Tensor, progress=None) -> AccuracyResult:
    preds = int8_predictions(lowered, x, progress)
    return AccuracyResult("int8", float((preds == y.numpy()).mean()), INT8_EVALUATOR, len(y))


def fake_quant_accuracy(converted: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> AccuracyResult:
    from condition.frontends.torch.train import predict

    return AccuracyResult("fake_quant", float((predict(converted, x) == y.numpy()).mean()), FAKE_QUANT_EVALUATOR, len(y))


def float_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> AccuracyResult:
    from condition.frontends.torch.train import predict

    return AccuracyResult("float", float((predict(model, x) == y.numpy()).mean()), FLOAT_EVALUATOR, len(y))
