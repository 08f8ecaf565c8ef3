"""int8 functional accuracy of a .tflite with the TFLite interpreter, batched.

The interpreter runs the same int8 kernels a Cortex-M would run for the model's CPU parts, so
its top-1 is the accuracy of the artifact, not of the Keras model it came from. tensorflow is
imported only when an accuracy is asked for (the package's __init__ has set TF_USE_LEGACY_KERAS).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from condition.backend.metrics import AccuracyResult
from condition.backend.tflite_file import require_int8
from condition.errors import ArtifactError, one_line

EVALUATOR = "tflite-interpreter int8"


def _interpreter(path: Path, batch: int):
    import tensorflow as tf

    try:
        with warnings.catch_warnings():  # the deprecation notice about ai_edge_litert, not actionable here
            warnings.simplefilter("ignore")
            resolver = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
            interp = tf.lite.Interpreter(model_path=str(path), num_threads=1, experimental_op_resolver_type=resolver)
        inp = interp.get_input_details()[0]
        if batch != inp["shape"][0]:
            interp.resize_tensor_input(inp["index"], [batch, *inp["shape"][1:]], strict=False)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ArtifactError(str(path), f"the TFLite interpreter cannot load it ({one_line(exc) or type(exc).__name__})") from None
    return interp


def _quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def _predict_batches(path: Path, images: np.ndarray, batch: int) -> np.ndarray:
    interp = _interpreter(path, batch)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    shape = tuple(int(d) for d in inp["shape"][1:])
    if int(np.prod(shape)) != int(np.prod(images.shape[1:])):
        raise ArtifactError(str(path), f"takes inputs of shape {shape}, the data set's images are {tuple(images.shape[1:])}")
    preds = np.empty(len(images), dtype=np.int64)
    for start in range(0, len(images), batch):
        chunk = images[start : start + batch]
        n = len(chunk)
        if n < batch:  # pad the last batch rather than re-allocating the interpreter
            chunk = np.concatenate([chunk, np.zeros((batch - n, *chunk.shape[1:]), chunk.dtype)])
        interp.set_tensor(inp["index"], _quantize(chunk.reshape((batch, *shape)), inp))
        interp.invoke()
        logits = interp.get_tensor(out["index"]).reshape(batch, -1)
        preds[start : start + n] = np.argmax(logits[:n], axis=-1)
    return preds


def int8_accuracy(tflite: str | Path, images: np.ndarray, labels: np.ndarray, batch: int = 250) -> AccuracyResult:
    """Top-1 of the int8 .tflite on float images in [0, 1] (quantized with the model's input scale).

        int8_accuracy("model_int8.tflite", ds.normalised("test"), ds.y_test).value  # e.g. 0.857
    """
    path = Path(tflite)
    require_int8(path)
    batch = max(1, min(batch, len(images)))
    try:
        preds = _predict_batches(path, images, batch)
    except ArtifactError:
        raise
    except (ValueError, RuntimeError):  # a graph with a fixed batch of 1 (e.g. a hard-coded reshape)
        preds = _predict_batches(path, images, 1)
    return AccuracyResult(kind="int8", value=float(np.mean(preds == labels)), evaluator=EVALUATOR, images=int(len(images)))
