"""Quantization-aware training with PT2E (prepare_qat_pt2e + EthosUQuantizer), fine-tuned, then
converted to int8.

    quantized = apply(model, QatConfig(fine_tune_epochs=1), ctx)

With `preserve` (PQAT/CQAT/PCQAT), the masks and shared cluster values of earlier steps are
re-applied after every optimizer step, so QAT does not undo pruning or clustering. On a model
with BatchNorm, prepare_qat_pt2e rewrites each conv → BatchNorm pair (simulated folding) and
renames every weight to `_param_constantN`; the weights themselves are the same tensors, so the
constraints are moved onto the new names by tensor storage. Convert then folds BatchNorm, which
keeps the zeros (a model reaches QAT clustered only with its BatchNorm folded already: cluster.py).
"""
from __future__ import annotations

import torch
from torch import nn

from condition.datasets import Dataset
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
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

    model = cons.copy_model(model)
    earlier = cons.constraints_of(model) if config.preserve else []
    example = example_input(input_shape_nchw(data.input_shape))
    graph = export_for_quantization(model, example, type(model).__name__)
    storage = {p.data_ptr(): name for name, p in model.named_parameters()}  # torch.export keeps the tensors
    prepared = prepare_qat_pt2e(graph, quantizer_for(target, per_channel=per_channel_weights(model), qat=True))
    names = {storage[p.data_ptr()]: name for name, p in prepared.named_parameters() if p.data_ptr() in storage}
    earlier = [cons.renamed(c, names) for c in earlier]
    with torch.no_grad():  # initialise the observers on real images before training moves them
        prepared(calibration_images(data, OBSERVER_WARMUP_IMAGES, seed))
    missing = [n for c in earlier for n in getattr(c, "masks", getattr(c, "assignments", {})) if cons.find_param(prepared, n) is None]
    if missing:
        raise RuntimeError(f"QAT graph lost the weights {missing[:3]} of earlier steps")  # a bug, not user input
    train(prepared, data, config.fine_tune_epochs, seed, after_step=[cons.hook_for(prepared, earlier)], progress=progress)
    cons.apply_all(prepared, earlier)
    converted = convert_pt2e(prepared)
    cons.copy_constraints(model, converted)
    return converted
