"""Sparsity and distinct-value counts read from the exported int8 .tflite weight tensors.

Counted on what Vela will encode, not on the tfmot wrapper's masks: a strip or a conversion that
lost the zeros (or the clusters) shows up here. Reads the flatbuffer through the backend's
tflite_file reader, so this module imports no tensorflow (`condition measure` uses it too).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from condition.backend.metrics import LayerWeights, WeightStats
from condition.backend.tflite_file import INT8, read_tflite
from condition.techniques import conditioning, exported_layer

# builtin code -> index of the weight tensor among the operator's inputs
_WEIGHTED_OPS = {3: 1, 4: 1, 9: 1, 67: 1}  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV
_KINDS = {3: "conv", 4: "depthwise", 9: "fc", 67: "transpose_conv"}


def _distinct_per_channel(values: np.ndarray, axis: int, per_channel: bool) -> int:
    """Largest count of distinct int8 values in one quantization channel.

    With per-channel scales (the TFLite default for PTQ), 16 shared float values become up to 16
    int8 values in each channel but different ones across channels, so a per-tensor count would
    hide the clustering; per-tensor quantized layers are counted whole.
    """
    if not per_channel or values.ndim == 0:
        return int(len(np.unique(values)))
    moved = np.moveaxis(values, axis, 0).reshape(values.shape[axis], -1)
    return int(max(len(np.unique(row)) for row in moved))


def two_four(values: np.ndarray, kind: str) -> bool:
    """Vela's U85 2:4 sparse format fits: a conv or fully connected weight whose every 4
    consecutive input channels (the last axis), at each kernel position, hold at least 2 zeros."""
    if kind not in ("conv", "fc") or values.shape[-1] % 4:
        return False
    return bool(np.all(np.count_nonzero(values.reshape(-1, 4) == 0, axis=1) >= 2))


def weight_stats(tflite: str | Path, chain: Sequence[Any] = (), namer: Callable[[str], str] | None = None) -> WeightStats:
    """Per weighted layer: parameters, zeros and distinct int8 values (see `_distinct_per_channel`);
    with the run's `chain`, also which of its techniques conditioned the layer (and why others
    left it out). A layer is named by `namer` from its op's output tensor (the converter names the
    weight itself `tfl.pseudo_qconst3`, the op's output after the Keras layers fused into it);
    without one, by the Keras layer in that name (`backend.layer_names.keras_layer_name`)."""
    from condition.backend.layer_names import keras_layer_name

    namer = namer or (lambda tensor: keras_layer_name(tensor, tensor))
    graph = read_tflite(tflite)
    weighted = [(op, graph.tensors[op.inputs[_WEIGHTED_OPS[op.builtin_code]]]) for op in graph.operators
                if op.builtin_code in _WEIGHTED_OPS]
    # no constant data: a weight computed at run time
    weighted = [(op, tensor) for op, tensor in weighted if tensor.type == INT8 and tensor.data is not None]
    layers: list[LayerWeights] = []
    for i, (op, tensor) in enumerate(weighted):  # operators in execution order: the last is the classifier
        values = tensor.values()
        per_channel = tensor.scales > 1
        kind = _KINDS[op.builtin_code]
        name = namer(graph.tensors[op.outputs[0]].name) if op.outputs else tensor.name
        done, left_out = conditioning(chain, exported_layer(name, kind, values.shape, "tf", last=i == len(weighted) - 1))
        layers.append(LayerWeights(
            name=name,
            shape=list(tensor.shape),
            params=int(values.size),
            zeros=int(np.count_nonzero(values == 0)),
            unique_values=_distinct_per_channel(values, tensor.quantized_dimension if per_channel else 0, per_channel),
            kind=kind,
            unique_axis="channel" if per_channel else "tensor",
            two_four=two_four(values, kind),
            conditioned=done,
            left_out=left_out,
        ))
    return WeightStats(layers=layers)
