"""Quantization-aware training with tfmot: annotate → quantize_apply(scheme) → fit; exported as is.

After prune and/or cluster the scheme preserves what they did (tfmot collaborative optimization):
PQAT keeps the zeros, CQAT keeps the clusters, PCQAT keeps both. Without `preserve`, plain QAT
may move zeros and shared values off, undoing the earlier savings. Clusters CQAT does not
preserve (DepthwiseConv2D; a conv followed by a separate ReLU6 layer, which tfmot leaves without
a weight quantizer) are held after every batch as during clustering.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
from condition.frontends.tf.cluster import hold_clusters
from condition.frontends.tf.layers import kernel_attr, layer_info
from condition.frontends.tf.models import clone
from condition.frontends.tf.train import TrainData, fit
from condition.techniques import ClusterConfig, PruneConfig, QatConfig

STEP = QatConfig.name


def scheme_name(config: QatConfig, after: Sequence[Any]) -> str:
    """Which tfmot scheme the chain calls for (`after`: the earlier steps' configs): qat, pqat, cqat or pcqat."""
    if not config.preserve:
        return "qat"
    pruned = any(isinstance(c, PruneConfig) for c in after)
    clustered = any(isinstance(c, ClusterConfig) for c in after)
    return {(False, False): "qat", (True, False): "pqat", (False, True): "cqat", (True, True): "pcqat"}[(pruned, clustered)]


def _scheme(name: str) -> Any:
    _, _, tfmot = keras_modules()
    combine = tfmot.experimental.combine
    if name == "pqat":
        return combine.Default8BitPrunePreserveQuantizeScheme()
    if name in ("cqat", "pcqat"):
        return combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=name == "pcqat")
    return tfmot.quantization.keras.default_8bit.Default8BitQuantizeScheme()


@REGISTRY.register(QatConfig)
def apply(model: Any, config: QatConfig, ctx: StepContext) -> Any:
    """Return a fake-quantized, fine-tuned copy of `model`; the scheme follows the chain's earlier
    steps (`ctx.done`): after prune and cluster it is PCQAT.

        q = qat.apply(clustered, QatConfig(fine_tune_epochs=1), ctx)
    """
    data: TrainData = ctx.data
    _, _, tfmot = keras_modules()
    q = tfmot.quantization.keras
    quantized = q.quantize_apply(q.quantize_annotate_model(clone(model)), _scheme(scheme_name(config, ctx.done)))
    held = _unpreserved_clusters(quantized, config, ctx)
    fit(quantized, data, config.fine_tune_epochs, STEP, callbacks=[hold_clusters(held)] if held else [],
        fine_tune=ctx.fine_tune)
    return quantized


def _unpreserved_clusters(quantized: Any, config: QatConfig, ctx: StepContext) -> list[tuple[Any, np.ndarray, int]]:
    """The clustered kernels CQAT would let drift, to hold as during clustering (each distinct value
    one cluster; zeros pinned with `preserve_sparsity`): tfmot disables cluster preservation for
    DepthwiseConv2D, and a conv whose ReLU6 is a separate layer gets no weight quantizer at all."""
    cluster = next((c for c in ctx.done if isinstance(c, ClusterConfig)), None)
    if cluster is None or not config.preserve:
        return []
    held = []
    for wrapper in quantized.layers:
        layer = getattr(wrapper, "layer", wrapper)
        info = layer_info(layer)
        quantizer = getattr(getattr(wrapper, "quantize_config", None), "weight_quantizer", None)
        if info is None or cluster.left_out(info) is not None or type(quantizer).__name__.startswith("ClusterPreserve"):
            continue
        # the float variable itself (the wrapper swaps the layer's attribute for its fake-quantized tensor)
        attr = kernel_attr(layer)
        variable = next(v for v in wrapper.trainable_weights if v.name.split("/")[-1].split(":")[0] == attr)
        kernel = variable.numpy()
        values, assign = np.unique(kernel, return_inverse=True)
        assign = assign.reshape(kernel.shape)
        if cluster.preserve_sparsity and (values == 0).any():
            zero = int(np.flatnonzero(values == 0)[0])
            assign = np.where(assign == zero, -1, assign - (assign > zero))
        held.append((variable, assign, len(values)))
    return held
