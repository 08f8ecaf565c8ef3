"""Accuracy of a lowered program: int8 by running its delegated TOSA graph with the TOSA
reference model (the bit-exact int8 arithmetic the NPU executes), and PT2E fake-quant by
running the converted graph in torch (float simulation of int8: close, not bit-exact).

The ops the partitioner left outside the delegate (the input quantize, the output dequantize,
and any op the NPU does not support) run in torch; only the delegate call is replaced, so the
figure covers the whole .pte graph. The .pte's graph is compiled for batch 1 (one reference-model
call per image, about 6 ms for the MLP), so for a large test set each call runs EVAL_BATCH images
(about 1.2 ms an image): the .pte's own TOSA graph with its batch axis patched (tosa_worker.rebatch,
for graphs of ops that never mix images), else the converted graph lowered once more to TOSA at that
batch (export.lower_for_evaluation: same partition, same passes, no Vela). Either way every batched
evaluation checks its first images against the unpatched batch-1 graph and falls back to it on any
difference. Chunks spread over a process pool.

Faster still, a graph of the ops tosa_numpy computes runs there (the MLP's 10,000 images in 0.3 s
instead of 5-7 s): the same TOSA arithmetic in numpy, used only after its logits on the first
NUMPY_CHECK_IMAGES images equal the reference model's; otherwise the reference model does it all.
"""
from __future__ import annotations

import concurrent.futures
import logging
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from condition.backend.metrics import AccuracyResult
from condition.errors import StepError, one_line
from condition.frontends.torch.export import LoweredProgram, channels_last, lower_for_evaluation, lowered_modules

log = logging.getLogger(__name__)
INT8_EVALUATOR = "tosa-reference-model int8 (delegated TOSA graph, bit-exact NPU arithmetic)"
NUMPY_INT8_EVALUATOR = ("TOSA int8 arithmetic in numpy (delegated TOSA graph, bit-exact NPU arithmetic; "
                        "equal to the tosa-reference-model on the first {check} images)")
FAKE_QUANT_EVALUATOR = "pt2e fake-quant (torch float simulation of the int8 graph)"
FLOAT_EVALUATOR = "torch float32"
CHUNK = 250  # images per reference-model task of the batch-1 graph
EVAL_BATCH = 250  # images per reference-model call of the batched evaluation graph (5.7x faster than one by one)
BATCHED_MIN_IMAGES = 50  # below this, image by image is as fast as a batch and its check
LOWERING_MIN_IMAGES = 1000  # below this, lowering a second graph costs more than it saves
CHECK_IMAGES = 2  # images of every batched evaluation also run on the batch-1 graph: results must be equal
NUMPY_CHECK_IMAGES = 250  # images of a numpy evaluation also run on the reference model (one batched call)
BATCH = 2000  # images per pass through the CPU part of the graph
POOL_MIN_IMAGES = 500  # below this a process pool costs more than it saves
POOL_MIN_SECONDS = 2.0  # tosa_numpy work below this is done in-process (a pool starts in about 0.4 s)


def default_workers() -> int:
    """Evaluation processes: the run's cores (a compare cell's CPUs), at most 2."""
    from condition.threads import run_cores

    return max(1, min(2, run_cores()))


@dataclass(frozen=True)
class EvalGraph:
    """A lowered edge program whose delegates the reference model runs, `batch` images per call."""

    program: Any
    graphs: dict[str, bytes]  # TOSA flatbuffer per delegation tag
    batch: int
    engine: str = "reference"  # or "numpy" (tosa_numpy: any number of images per call)


def batch1_graph(lowered: LoweredProgram) -> EvalGraph:
    """The .pte's own delegated graph (its TOSA files), one image per call."""
    files = _tosa_by_tag(lowered)
    graphs = {tag: files[tag].read_bytes() for tag in (_tag_of(m) for m in lowered_modules(lowered.eval_program).values())}
    return EvalGraph(lowered.eval_program, graphs, 1)


def rebatched_graph(exact: EvalGraph, batch: int = EVAL_BATCH) -> EvalGraph | None:
    """The .pte's TOSA graphs patched to `batch` images per call (no lowering), or None (see rebatch)."""
    from condition.frontends.torch.tosa_worker import rebatch

    graphs = {tag: rebatch(graph, batch) for tag, graph in exact.graphs.items()}
    if not graphs or any(g is None for g in graphs.values()):
        return None
    return EvalGraph(exact.program, graphs, batch)


def numpy_graph(exact: EvalGraph, batch: int = EVAL_BATCH) -> EvalGraph | None:
    """The .pte's TOSA graphs on tosa_numpy, `batch` images per call, or None when a graph is not
    batch-safe (see rebatch) or holds something tosa_numpy does not compute."""
    from condition.frontends.torch.tosa_numpy import TosaNumpyGraph, Unsupported
    from condition.frontends.torch.tosa_worker import rebatch

    if not exact.graphs:
        return None
    for tag, graph in exact.graphs.items():
        if rebatch(graph, 2) is None:
            return None
        try:
            TosaNumpyGraph(graph)
        except Unsupported as exc:
            log.info("int8 evaluation on the reference model: tosa_numpy does not compute %s (%s)", tag, exc)
            return None
    return EvalGraph(exact.program, exact.graphs, batch, "numpy")


def batched_graph(lowered: LoweredProgram, batch: int = EVAL_BATCH) -> EvalGraph | None:
    """The same converted graph lowered to TOSA for `batch` images per call, or None (see export)."""
    program = lower_for_evaluation(lowered, batch)
    if program is None:
        return None
    return EvalGraph(program, {_tag_of(m): m.processed_bytes for m in lowered_modules(program).values()}, batch)


class _DelegateRunner:
    """Stands in for executorch_call_delegate: runs the delegate's TOSA graph instead."""

    def __init__(self, graph: EvalGraph, pool: concurrent.futures.Executor | None) -> None:
        self.batch = graph.batch
        self.engine = graph.engine
        self.pool = pool

    def __call__(self, lowered: Any, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        from condition.frontends.torch.tosa_worker import run_chunk

        tag = _tag_of(lowered)
        inputs = [_to_numpy(a) for a in args]
        n = len(inputs[0])
        size = self.batch if self.batch > 1 else CHUNK
        chunks = [[x[s:s + size] for x in inputs] for s in range(0, n, size)]
        if self.pool is not None and len(chunks) > 1:
            results = list(self.pool.map(run_chunk, [tag] * len(chunks), chunks, [self.batch] * len(chunks),
                                         [self.engine] * len(chunks)))
        else:
            results = [run_chunk(tag, c, self.batch, self.engine) for c in chunks]
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


def _logits(graph: EvalGraph, delegate: Callable, x: torch.Tensor, graph_module: torch.fx.GraphModule) -> torch.Tensor:
    """Whole batch through the CPU ops when they allow it, else in pieces of the graph's batch."""
    try:
        return _interpret(graph_module, delegate, x)
    except Exception:  # noqa: BLE001 — CPU ops specialised on the graph's batch
        size = graph.batch
        pieces = []
        for s in range(0, len(x), size):
            piece = x[s:s + size]
            n = len(piece)
            if n < size:
                piece = torch.cat([piece, piece.new_zeros(size - n, *piece.shape[1:])])
            pieces.append(_interpret(graph_module, delegate, piece)[:n])
        return torch.cat(pieces)


def evaluate(graph: EvalGraph, x: torch.Tensor, progress: Callable[[float], None] | None = None,
             workers: int | None = None) -> torch.Tensor:
    """Logits of every image from `graph`'s program, its delegates on `graph.engine`."""
    from condition.backend.output_log import captured_output
    from condition.frontends.torch import tosa_worker

    graph_module = graph.program.module()
    workers = default_workers() if workers is None else workers
    tosa_worker.load(graph.graphs)
    pool = None
    if workers > 1 and len(x) >= POOL_MIN_IMAGES:
        pool = concurrent.futures.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=tosa_worker.init_worker, initargs=(graph.graphs,),
        )
    delegate = _DelegateRunner(graph, pool)
    logits: list[torch.Tensor] = []
    try:
        for start in range(0, len(x), BATCH):
            with captured_output(Path(os.devnull)):  # the reference model prints a note per run
                logits.append(_logits(graph, delegate, x[start:start + BATCH], graph_module))
            if progress is not None:
                progress(min(1.0, (start + BATCH) / len(x)))
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return torch.cat(logits) if logits else torch.zeros(0)


def int8_predictions(lowered: LoweredProgram, x: torch.Tensor, progress: Callable[[float], None] | None = None,
                     workers: int | None = None, batched: bool | None = None) -> np.ndarray:
    """Class index per image from the delegated graph's int8 arithmetic (see int8_logits)."""
    logits, _ = int8_logits(lowered, x, progress, workers, batched)
    return _classes(logits, len(x))


def _classes(logits: torch.Tensor, images: int) -> np.ndarray:
    return logits.argmax(-1).reshape(images).numpy() if images else np.zeros(0, dtype=np.int64)


def int8_logits(lowered: LoweredProgram, x: torch.Tensor, progress: Callable[[float], None] | None = None,
                workers: int | None = None, batched: bool | None = None) -> tuple[torch.Tensor, str]:
    """(logits, evaluator) of the delegated graph: tosa_numpy or the TOSA reference model.

    `batched`: many images per call (default: from BATCHED_MIN_IMAGES images, a second lowering only
    from LOWERING_MIN_IMAGES); False = the .pte's batch-1 graph on the reference model, image by image."""
    where = str(lowered.tosa_files[0] if lowered.tosa_files else lowered.pte)
    if channels_last(lowered.example):  # the program takes NHWC images: give them so (the delegate reads its dim order)
        x = x.contiguous(memory_format=torch.channels_last)
    try:
        exact = batch1_graph(lowered)
        found = None
        if batched or (batched is None and len(x) >= BATCHED_MIN_IMAGES):
            found = _batched_logits(lowered, exact, x, progress, workers, lowering=bool(batched) or len(x) >= LOWERING_MIN_IMAGES)
        if found is None:
            found = evaluate(exact, x, progress, workers), INT8_EVALUATOR
    except Exception as exc:
        raise StepError("tosa reference model", where, f"{type(exc).__name__}: {one_line(exc)}") from None
    return found


def _batched_logits(lowered: LoweredProgram, exact: EvalGraph, x: torch.Tensor, progress: Callable[[float], None] | None,
                    workers: int | None, lowering: bool) -> tuple[torch.Tensor, str] | None:
    """(logits, evaluator) from tosa_numpy, else the patched graph, else (with `lowering`) the graph
    lowered again; None when none runs or gives the reference logits on the first images: the
    batch-1 graph's for the reference model's graphs, the patched graph's (itself checked) for tosa_numpy."""
    batch = min(EVAL_BATCH, len(x))
    check = min(CHECK_IMAGES, len(x))
    makers = [lambda: numpy_graph(exact, batch), lambda: rebatched_graph(exact, batch)]
    makers += [lambda: batched_graph(lowered, batch)] if lowering else []
    for make in makers:
        graph = make()
        if graph is None:
            continue
        try:
            if graph.engine == "numpy":
                logits = _numpy_logits(graph, exact, x, progress, workers)
                if logits is not None:
                    return logits, NUMPY_INT8_EVALUATOR.format(check=min(NUMPY_CHECK_IMAGES, len(x)))
                continue
            logits = evaluate(graph, x, progress, workers)
        except Exception as exc:  # noqa: BLE001 — e.g. CPU ops outside the delegate fixed to batch 1, a sum out of int32
            log.info("batched int8 evaluation failed (%s: %s)", type(exc).__name__, one_line(exc))
            continue
        if torch.equal(logits[:check], evaluate(exact, x[:check], workers=1)):
            return logits, INT8_EVALUATOR
        log.warning("batched int8 evaluation differs from the .pte's batch-1 graph on its first images: not used")
    return None


def _numpy_logits(graph: EvalGraph, exact: EvalGraph, x: torch.Tensor, progress: Callable[[float], None] | None,
                  workers: int | None) -> torch.Tensor | None:
    """tosa_numpy's logits, or None when they differ from the reference model's on the first images.
    Those run first, in this process; their time decides whether the rest is worth a process pool
    (the MLP's 10,000 images take 0.3 s, a pool's start 0.4 s; DS-CNN's 12 s)."""
    head = min(NUMPY_CHECK_IMAGES, len(x))
    start = time.perf_counter()
    first = evaluate(graph, x[:head], workers=1)
    seconds = time.perf_counter() - start
    if not _equals_reference(first, exact, x[:head]):
        log.warning("int8 evaluation in numpy differs from the TOSA reference model on its first images: not used")
        return None
    rest = x[head:]
    if not len(rest):
        return first
    pool = seconds * len(rest) / head > POOL_MIN_SECONDS
    return torch.cat([first, evaluate(graph, rest, progress, workers if pool else 1)])


def _equals_reference(logits: torch.Tensor, exact: EvalGraph, x: torch.Tensor) -> bool:
    """tosa_numpy's logits of `x` equal the reference model's: the patched graph in one call, whose
    first images equal the batch-1 graph's."""
    reference = rebatched_graph(exact, len(x))
    if reference is None or not torch.equal(logits, evaluate(reference, x, workers=1)):
        return False
    check = min(CHECK_IMAGES, len(x))
    return torch.equal(logits[:check], evaluate(exact, x[:check], workers=1))


def int8_accuracy(lowered: LoweredProgram, x: torch.Tensor, y: torch.Tensor, progress=None) -> AccuracyResult:
    logits, evaluator = int8_logits(lowered, x, progress)
    return AccuracyResult("int8", float((_classes(logits, len(x)) == y.numpy()).mean()), evaluator, len(y))


def fake_quant_accuracy(converted: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> AccuracyResult:
    from condition.frontends.torch.train import predict

    return AccuracyResult("fake_quant", float((predict(converted, x) == y.numpy()).mean()), FAKE_QUANT_EVALUATOR, len(y))


def float_accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> AccuracyResult:
    from condition.frontends.torch.train import predict

    return AccuracyResult("float", float((predict(model, x) == y.numpy()).mean()), FLOAT_EVALUATOR, len(y))
