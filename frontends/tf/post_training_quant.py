"""Post-training int8 quantization: the Keras model is unchanged; `export.to_int8_tflite`
calibrates activation ranges on `calibration_images` representative training images."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from condition.frontends.tf.export import to_int8_tflite
from condition.frontends.tf.models import clone
from condition.frontends.tf.train import TrainData
from condition.techniques import PostTrainingQuantConfig


def apply(model: Any, config: PostTrainingQuantConfig, data: TrainData) -> Any:
    """A copy of the float model: PTQ happens at conversion (see `export`)."""
    return clone(model)


def export(model: Any, config: PostTrainingQuantConfig, data: TrainData, path: str | Path) -> Path:
    """Full-int8 .tflite calibrated on the configured number of training images.

        post_training_quant.export(model, PostTrainingQuantConfig(calibration_images=200), data, "m.tflite")
    """
    return to_int8_tflite(model, data.calibration(config.calibration_images), path)
