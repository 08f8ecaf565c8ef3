"""Post-training int8 quantization: the Keras model is unchanged here; the TFLite converter
calibrates activation ranges on `calibration_images` representative training images when the
frontend exports the int8 model (frontends/tf/frontend.py)."""
from __future__ import annotations

from typing import Any

from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY
from condition.frontends.tf.models import clone
from condition.techniques import PostTrainingQuantConfig


@REGISTRY.register(PostTrainingQuantConfig)
def apply(model: Any, config: PostTrainingQuantConfig, ctx: StepContext) -> Any:
    """A copy of the float model: PTQ happens at conversion."""
    return clone(model)
