"""Keras → full-int8 TFLite (int8 weights, activations, input and output) for Vela.

Post-training quantization calibrates on a representative set of training images; a QAT model
already carries its ranges, and the same converter call turns its fake-quant nodes into int8.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np

from condition.backend.atomic import write_bytes_atomic
from condition.backend.output_log import captured_output
from condition.errors import StepError, one_line
from condition.frontends.tf import keras_modules


def to_int8_tflite(model: Any, calibration: np.ndarray, path: str | Path, per_channel: bool = True) -> Path:
    """Convert `model` to a full-int8 .tflite at `path` (written atomically); StepError on failure.

    `per_channel=False` gives each weight tensor one scale: after clustering that keeps a layer's
    k shared float values k int8 codes (per-channel scales spread them over many codes and undo
    the sharing Vela compresses); the torch frontend makes the same choice.

        to_int8_tflite(model, data.calibration(200), run_dir / "model_int8.tflite")
    """
    tf, _, _ = keras_modules()
    path = Path(path)

    def representative() -> Iterator[list[np.ndarray]]:
        for i in range(len(calibration)):
            yield [calibration[i : i + 1].astype(np.float32)]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    if not per_channel:
        converter._experimental_disable_per_channel = True  # TFLite's switch for per-tensor weight scales
    try:
        with captured_output(path.with_suffix(".convert.log")):
            flatbuffer = converter.convert()
        write_bytes_atomic(path, flatbuffer)
    except Exception as exc:
        raise StepError("tflite int8 conversion", str(path), f"{type(exc).__name__}: {one_line(exc)}") from None
    return path
