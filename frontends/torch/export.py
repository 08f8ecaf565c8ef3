"""torch.export → PT2E int8 (EthosUQuantizer, symmetric) → to_edge_transform_and_lower with
the EthosUPartitioner → .pte, keeping the delegated TOSA graph and Vela's CSVs beside it.

The quantization graph is exported with a dynamic batch dimension so calibration, QAT and
fake-quant evaluation run on whole batches; the converted graph is re-exported with the static
batch-1 input the NPU program is compiled for (the seed notebook's flow). For int8 evaluation only,
the same converted graph is lowered once more to TOSA at a larger batch (`lower_for_evaluation`):
the .pte and Vela's figures stay the batch-1 ones.
"""
from __future__ import annotations

import copy
import functools
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from condition.backend.output_log import captured_output
from condition.backend.target import Target
from condition.errors import ModelError, StepError, one_line
from condition.frontends.torch.compile_spec import compile_spec_for

log = logging.getLogger(__name__)
MAX_BATCH = 4096
# Ops that convert the float model inputs/outputs to and from the NPU's int8: they run on the
# CPU in every Ethos-U .pte with float I/O and are not counted as ops the partitioner rejected.
IO_OPS = ("quantize_per_tensor", "dequantize_per_tensor")
PLUMBING = ("getitem", "executorch_call_delegate")


def example_input(shape_chw: tuple[int, int, int]) -> tuple[torch.Tensor]:
    return (torch.zeros(1, *shape_chw),)


def program_input(shape_chw: tuple[int, int, int]) -> tuple[torch.Tensor]:
    """The .pte's input: channels-last (NHWC, as cameras and TFLite models deliver images) when the
    images have more than one channel. An NCHW input costs a Transpose on the NPU before the first
    conv: DS-CNN on 32x32x3, U85-128, 59,307 NPU cycles with it, 43,588 without (the tf figure)."""
    (x,) = example_input(shape_chw)
    return (x.to(memory_format=torch.channels_last),) if shape_chw[0] > 1 else (x,)


def channels_last(example: tuple[torch.Tensor, ...]) -> bool:
    """Whether a program input is channels-last and not also plain contiguous (one channel is both)."""
    x = example[0] if example else None
    return x is not None and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def export_for_quantization(model: nn.Module, example: tuple[torch.Tensor], name: str) -> torch.fx.GraphModule:
    """The graph PT2E quantizes: batch dimension dynamic where the model allows it."""
    from condition.frontends.torch.models import set_train_mode

    set_train_mode(model, False)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    # An example batch of 2: torch.export specialises a size-1 dimension, so conv nets exported
    # from a batch-1 example came out static (and then refuse batches).
    batch_of_2 = tuple(torch.cat([t, t]) if t.shape[0] == 1 else t for t in example)
    try:
        exported = torch.export.export(model, batch_of_2, dynamic_shapes=({0: batch},), strict=False)
    except Exception:  # a model that specialises on batch 1 is still exportable statically
        try:
            exported = torch.export.export(model, example, strict=False)
        except Exception as exc:
            raise ModelError(name, f"torch.export failed ({type(exc).__name__}: {one_line(exc)})") from None
    return exported.module(check_guards=False)


def quantizer_for(target: Target, per_channel: bool = True, qat: bool = False):
    """EthosUQuantizer with the symmetric int8 config for the same Target the program compiles for
    (for QAT, with its conv → BatchNorm pairs annotated as one pattern: `_qat_quantizer_class`)."""
    from executorch.backends.arm.quantizer import EthosUQuantizer, get_symmetric_quantization_config

    quantizer = (_qat_quantizer_class() if qat else EthosUQuantizer)(compile_spec_for(target))
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=per_channel, is_qat=qat))
    return quantizer


@functools.cache
def _qat_quantizer_class() -> type:
    """EthosUQuantizer whose annotation sees each conv → BatchNorm (→ ReLU) chain as adjacent nodes.

    Why: the Arm quantizer's pattern matcher (executorch 1.5.1, the composable quantizer) only finds
    a chain whose nodes follow each other in graph order. When one of its transforms for annotation
    rewrites the graph (a quantized average pooling or mean anywhere in it does), the graph is
    re-traced and each BatchNorm's parameters land as get_attr nodes between the conv and the
    BatchNorm. The conv is then annotated alone, with its own output quantized; prepare_qat_pt2e's
    conv-BN fusion puts the BatchNorm scaling behind that quantize, and convert_pt2e's fold no
    longer matches: the BatchNorms and the scaling (add, sqrt, div, view, batch_norm per conv)
    stayed in the graph and on the CPU (DS-CNN: 54 CPU ops). While annotating, the get_attr nodes
    (no inputs, so order-free) wait at the top of the graph; then each goes back right before its
    first user, where the re-trace put it (the record's layer order, and its last layer, the
    classifier, follow the graph). PT2E then folds BatchNorm as designed. Post-training
    quantization folds BatchNorm before annotating (prepare_pt2e) and needs none of it.
    """
    from executorch.backends.arm.quantizer import EthosUQuantizer

    class EthosUQatQuantizer(EthosUQuantizer):
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            _move_constants(model, to_top=True)
            model = super().annotate(model)
            _move_constants(model, to_top=False)
            return model

    return EthosUQatQuantizer


def _move_constants(graph_module: torch.fx.GraphModule, to_top: bool) -> None:
    """Every get_attr node right after the graph's inputs (`to_top`), or right before its first user."""
    graph = graph_module.graph
    position = {node: i for i, node in enumerate(graph.nodes)}
    placeholders = list(graph.find_nodes(op="placeholder"))
    if to_top and not placeholders:
        return
    anchor = placeholders[-1] if placeholders else None
    for node in [n for n in graph.nodes if n.op == "get_attr"]:
        if to_top:
            anchor.append(node)
            anchor = node
        elif node.users:
            min(node.users, key=position.__getitem__).prepend(node)
    graph.lint()
    graph_module.recompile()


@dataclass(frozen=True)
class Placement:
    """Where the partitioner put the ops: delegated to the NPU, or left on the CPU."""

    ops_on_npu: int
    cpu_ops: list[str]  # not counting the input quantize / output dequantize (IO_OPS) every .pte has
    delegates: int


@dataclass(frozen=True)
class LoweredProgram:
    pte: Path
    tosa_files: list[Path]
    intermediates: Path  # the TOSA file, Vela's CSVs and its console output (vela.log)
    placement: Placement
    eval_program: Any = field(repr=False)  # the lowered ExportedProgram before to_executorch: the int8 evaluator runs it
    converted: Any = field(default=None, repr=False)  # the PT2E graph it was lowered from (batched evaluation lowers it again)
    example: tuple[torch.Tensor, ...] = field(default=(), repr=False)
    target: Target | None = None


def _op_name(node: torch.fx.Node) -> str:
    """`linear` for aten.linear.default, `quantize_per_tensor` for quantized_decomposed.…, `getitem`."""
    name = getattr(node.target, "__name__", None) or str(node.target)
    parts = name.split("::")[-1].split(".")
    return parts[-2] if len(parts) >= 3 else parts[-1]


def _is_glue(name: str) -> bool:
    """Quantize/dequantize and tuple plumbing: not model operators in either count."""
    return "quantize" in name or name.startswith(PLUMBING)


def placement_of(edge_program: Any) -> Placement:
    """Count the ops inside each delegate and the compute ops left outside any delegate."""
    gm = edge_program.graph_module
    on_npu, cpu, delegates = 0, [], 0
    for node in gm.graph.nodes:
        if node.op == "get_attr" and node.target.startswith("lowered_module"):
            delegates += 1
            inner = getattr(gm, node.target).original_module.graph_module
            on_npu += sum(1 for n in inner.graph.nodes if n.op == "call_function" and not _is_glue(_op_name(n)))
        elif node.op == "call_function":
            name = _op_name(node)
            if name.startswith(PLUMBING):
                continue
            if not name.startswith(IO_OPS):
                cpu.append(name)
    return Placement(on_npu, cpu, delegates)


def lower(converted: torch.fx.GraphModule, example: tuple[torch.Tensor], target: Target, out_dir: Path,
          name: str = "model") -> LoweredProgram:
    """Lower a converted PT2E graph for `target` and save `<out_dir>/<name>.pte`.

    The TOSA file and Vela's CSVs land in `<out_dir>/delegate/`; Vela's console output in
    `<out_dir>/delegate/vela.log`.
    """
    from executorch.backends.arm.ethosu import EthosUPartitioner
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.extension.export_util.utils import save_pte_program

    import executorch.kernels.quantized  # noqa: F401  (registers the out-variants to_executorch needs)

    intermediates = out_dir / "delegate"
    spec = compile_spec_for(target, intermediates)
    vela_log = intermediates / "vela.log"
    pte = out_dir / f"{name}.pte"
    try:
        static = torch.export.export(converted, example, strict=False)
        with captured_output(vela_log):
            edge = to_edge_transform_and_lower(
                static, partitioner=[EthosUPartitioner(spec)], compile_config=EdgeCompileConfig(_check_ir_validity=False)
            )
            placement = placement_of(edge.exported_program())  # before to_executorch adds memory-planning nodes
            _relative_artifact_paths(edge.exported_program())
            eval_program = copy.deepcopy(edge.exported_program())
            program = edge.to_executorch(config=ExecutorchBackendConfig(extract_delegate_segments=False))
        save_pte_program(program, str(pte), str(out_dir))
    except Exception as exc:
        raise StepError("executorch lowering", str(pte), f"{type(exc).__name__}: {one_line(exc, limit=240)} (log: {vela_log})") from None
    tosa_files = sorted(intermediates.glob("output_*.tosa"))
    if placement.delegates and not tosa_files:
        raise StepError("executorch lowering", str(intermediates), "the Ethos-U backend wrote no TOSA file")
    return LoweredProgram(pte, tosa_files, intermediates, placement, eval_program, converted, example, target)


def lowered_modules(program: Any) -> dict[str, Any]:
    """The program's delegates by attribute name (`lowered_module_0`, ...)."""
    gm = program.graph_module
    return {n.target: getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr" and n.target.startswith("lowered_module")}


def _relative_artifact_paths(program: Any) -> None:
    """The compile spec's intermediate-artifact folder is serialised into the .pte; as the absolute
    path of the run's work folder (a private temp dir in compare) it made the same configuration's
    .pte differ byte for byte between runs. Stored as the folder's name beside the .pte instead."""
    for module in lowered_modules(program).values():
        for spec in module.compile_specs:
            if spec.key == "debug_artifact_path":
                spec.value = b"delegate"


def lower_for_evaluation(lowered: LoweredProgram, batch: int) -> Any | None:
    """The converted graph lowered again, to TOSA only, with a static input batch of `batch` images:
    the Ethos-U backend's own TOSA pipeline (same spec, same passes) minus Vela, so the reference
    model runs `batch` images per call instead of one. Returns the edge program (each delegate's
    `processed_bytes` is its TOSA graph), or None when its partition differs from the .pte's (it
    would not compute what the NPU computes) or the model cannot be lowered at that batch."""
    from executorch.backends.arm.tosa.backend import TOSABackend
    from executorch.backends.arm.tosa.partitioner import TOSAPartitioner
    from executorch.exir import EdgeCompileConfig, to_edge_transform_and_lower

    if lowered.converted is None or lowered.target is None or not lowered.example:
        return None
    spec = TOSABackend.filter_tosa_compile_specs(compile_spec_for(lowered.target))
    example = tuple(torch.zeros(batch, *t.shape[1:], dtype=t.dtype) for t in lowered.example)
    if channels_last(lowered.example):  # the same input layout as the .pte, so the same partition and passes
        example = tuple(t.to(memory_format=torch.channels_last) for t in example)
    try:
        with captured_output(Path(os.devnull)):
            static = torch.export.export(lowered.converted, example, strict=False)
            program = to_edge_transform_and_lower(
                static, partitioner=[TOSAPartitioner(spec)], compile_config=EdgeCompileConfig(_check_ir_validity=False)
            ).exported_program()
    except Exception as exc:  # noqa: BLE001 — the batch-1 path still evaluates it exactly
        log.info("no batched evaluation program (%s: %s)", type(exc).__name__, one_line(exc))
        return None
    if placement_of(program) != lowered.placement:
        log.info("batched evaluation program partitioned differently from the .pte: evaluating image by image")
        return None
    return program


def delegate_vela_version() -> str:
    """The version of the Vela that compiled the delegate: the `ethosu.vela` module ExecuTorch's
    `arm_vela.vela_compile` called in this process (not merely the installed distribution)."""
    import sys

    arm_vela = sys.modules.get("executorch.backends.arm.arm_vela")
    module = getattr(arm_vela, "vela", None)
    return str(getattr(module, "__version__", "unknown"))
