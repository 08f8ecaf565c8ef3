"""Post-training int8 quantization with PT2E and the EthosUQuantizer (symmetric config),
calibrated on real training images (the seed notebook's flow).

    quantized = apply(model, PostTrainingQuantConfig(calibration_images=200), data, target=target)

Returns the converted PT2E GraphModule: int8 weights, quantize/dequantize around every op, so
running it in torch gives the fake-quant accuracy; export.lower turns it into the .pte.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from condition.datasets import Dataset
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch.export import example_input, export_for_quantization, quantizer_for
from condition.frontends.torch.models import input_shape_nchw
from condition.frontends.torch.train import to_tensor
from condition.techniques import PostTrainingQuantConfig

CALIBRATION_BATCH = 50


def calibration_images(data: Dataset, count: int, seed: int) -> torch.Tensor:
    """`count` training images drawn at random (seeded), as the seed samples its calibration set."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(data.x_train), size=min(count, len(data.x_train)), replace=False))
    return to_tensor(data.x_train[idx], data.input_shape)


def per_channel_weights(model: nn.Module) -> bool:
    """Per-channel weight scales, except after clustering: one scale per layer keeps the k
    shared float values k distinct int8 values (per-channel scales would spread them over up
    to 255 codes and undo the weight sharing Vela compresses)."""
    return not any(isinstance(c, cons.ClusterConstraint) for c in cons.constraints_of(model))


@REGISTRY.register(PostTrainingQuantConfig)
def apply(model: nn.Module, config: PostTrainingQuantConfig, ctx: StepContext) -> torch.fx.GraphModule:
    """A converted (int8) PT2E copy of `model`; the caller's model is not changed."""
    data: Dataset = ctx.data
    target, seed, progress = ctx.target, ctx.seed, ctx.progress
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    model = cons.copy_model(model)  # with the constraints: clustered layers are quantized per tensor
    example = example_input(input_shape_nchw(data.input_shape))
    graph = export_for_quantization(model, example, type(model).__name__)
    prepared = prepare_pt2e(graph, quantizer_for(target, per_channel=per_channel_weights(model)))
    images = calibration_images(data, config.calibration_images, seed)
    with torch.no_grad():
        for start in range(0, len(images), CALIBRATION_BATCH):
            prepared(images[start:start + CALIBRATION_BATCH])
            if progress is not None:
                progress(min(1.0, (start + CALIBRATION_BATCH) / len(images)))
    converted = convert_pt2e(prepared)
    cons.copy_constraints(model, converted)
    return converted
