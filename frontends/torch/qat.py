"""Quantization-aware training with PT2E (prepare_qat_pt2e + EthosUQuantizer), fine-tuned, then
converted to int8.

    quantized = apply(model, QatConfig(fine_tune_epochs=1), ctx)

With `preserve` (PQAT/CQAT/PCQAT), the masks and shared cluster values of earlier steps are
re-applied after every optimizer step, so QAT does not undo pruning or clustering. On a model
with BatchNorm, prepare_qat_pt2e rewrites each conv → BatchNorm pair (simulated folding) and
renames every weight to `_param_constantN`; the weights themselves are the same tensors, so the
constraints are moved onto the new names by tensor storage. Convert then folds BatchNorm, which
keeps the zeros (a model reaches QAT clustered only with its BatchNorm folded already: cluster.py).

Two things make that fold happen and the folded conv delegable (every op on the NPU): the
quantizer sees conv → BatchNorm as one pattern (export.quantizer_for, qat=True), and a conv
without bias before a BatchNorm gets a zero bias first (`bias_before_batchnorm`), so its folded
bias is quantized to int32 like any conv bias instead of staying a float the NPU cannot take.
"""
from __future__ import annotations

import torch
from torch import nn

from condition.datasets import Dataset
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch import pattern_cache
from condition.frontends.torch.export import example_input, export_for_quantization, quantizer_for
from condition.frontends.torch.models import input_shape_nchw
from condition.frontends.torch.post_training_quant import calibration_images, per_channel_weights
from condition.frontends.torch.train import train
from condition.techniques import QatConfig

OBSERVER_WARMUP_IMAGES = 200


@REGISTRY.register(QatConfig)
def apply(model: nn.Module, config: QatConfig, ctx: StepContext) -> torch.fx.GraphModule:
    """A QAT-trained, converted (int8) PT2E copy of `model`; the caller's model is not changed."""
    data: Dataset = ctx.data
    target, seed, progress = ctx.target, ctx.seed, ctx.progress
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    pattern_cache.install()  # the conv-BatchNorm patterns of prepare and convert, exported once per process
    model = cons.copy_model(model)
    earlier = cons.constraints_of(model) if config.preserve else []
    example = example_input(input_shape_nchw(data.input_shape))
    graph = export_for_quantization(model, example, type(model).__name__)
    bias_before_batchnorm(graph)
    storage = {p.data_ptr(): name for name, p in model.named_parameters()}  # torch.export keeps the tensors
    prepared = prepare_qat_pt2e(graph, quantizer_for(target, per_channel=per_channel_weights(model), qat=True))
    names = {storage[p.data_ptr()]: name for name, p in prepared.named_parameters() if p.data_ptr() in storage}
    earlier = [cons.renamed(c, names) for c in earlier]
    with torch.no_grad():  # initialise the observers on real images before training moves them
        prepared(calibration_images(data, OBSERVER_WARMUP_IMAGES, seed))
    missing = [n for c in earlier for n in getattr(c, "masks", getattr(c, "assignments", {})) if cons.find_param(prepared, n) is None]
    if missing:
        raise RuntimeError(f"QAT graph lost the weights {missing[:3]} of earlier steps")  # a bug, not user input
    train(prepared, data, config.fine_tune_epochs, seed, after_step=[cons.hook_for(prepared, earlier)], progress=progress, fine_tune=ctx.fine_tune)
    cons.apply_all(prepared, earlier)
    converted = convert_pt2e(prepared)
    cons.copy_constraints(model, converted)
    return converted


def bias_before_batchnorm(graph: torch.fx.GraphModule) -> list[str]:
    """Give every conv that has no bias and feeds only a BatchNorm a zero bias (in place); returns
    the new parameters' names.

    Why: PT2E's QAT fold (convert_pt2e) folds BatchNorm's shift into the conv bias. With a bias in
    the graph that bias is annotated and quantized (int32, scale = input × weight scale, as the
    Arm quantizer derives it) and the folded value goes through it; without one the fold creates a
    float bias with no quantize/dequantize, and the Ethos-U partitioner leaves that conv on the CPU.
    A zero bias computes the same as none, and in training mode BatchNorm subtracts it again."""
    from torchao.quantization.pt2e.utils import _is_bn_node, _is_conv_node

    added = []
    for conv in [n for n in graph.graph.nodes if _is_conv_node(n)]:
        weight = conv.args[1]
        users = list(conv.users)
        has_bias = (len(conv.args) > 2 and conv.args[2] is not None) or "bias" in conv.kwargs
        if has_bias or getattr(weight, "op", None) != "get_attr" \
                or len(users) != 1 or not _is_bn_node(users[0]):
            continue
        owner_name, _, leaf = str(weight.target).rpartition(".")
        owner = graph.get_submodule(owner_name) if owner_name else graph
        bias_leaf = "bias" if not hasattr(owner, "bias") else f"{leaf}_bias"
        out_channels = getattr(owner, leaf).shape[0]
        owner.register_parameter(bias_leaf, nn.Parameter(torch.zeros(out_channels)))
        name = f"{owner_name}.{bias_leaf}" if owner_name else bias_leaf
        with graph.graph.inserting_before(conv):
            bias = graph.graph.get_attr(name)
        conv.args = (conv.args[0], weight, bias, *conv.args[3:])
        added.append(name)
    if added:
        graph.graph.lint()
        graph.recompile()
    return added
