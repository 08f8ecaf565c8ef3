"""Quantization-aware training with tfmot: annotate → quantize_apply(scheme) → fit; exported as is.

After prune and/or cluster the scheme preserves what they did (tfmot collaborative optimization):
PQAT keeps the zeros, CQAT keeps the clusters, PCQAT keeps both. Without `preserve`, plain QAT
may move zeros and shared values off, undoing the earlier savings.
"""
from __future__ import annotations

from typing import Any, Sequence

from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
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
    fit(quantized, data, config.fine_tune_epochs, STEP)
    return quantized
