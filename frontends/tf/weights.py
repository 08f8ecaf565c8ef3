"""Sparsity and distinct-value counts read from the exported int8 .tflite weight tensors.

Counted on what Vela will encode, not on the tfmot wrapper's masks: a strip or a conversion that
lost the zeros (or the clusters) shows up here. Reads the flatbuffer with Vela's own generated
reader, so this module imports no tensorflow (`condition measure` uses it too).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from condition.backend.metrics import LayerWeights, WeightStats
from condition.errors import ArtifactError

# builtin code -> index of the weight tensor among the operator's inputs
_WEIGHTED_OPS = {3: 1, 4: 1, 9: 1, 67: 1}  # CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV
_INT8 = 9


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


def weight_stats(tflite: str | Path) -> WeightStats:
    """Per weighted layer: parameters, zeros and distinct int8 values (see `_distinct_per_channel`)."""
    from ethosu.vela.tflite.Model import Model

    path = Path(tflite)
    try:
        data = path.read_bytes()
        model = Model.GetRootAsModel(data, 0)
        sg = model.Subgraphs(0)
        layers: list[LayerWeights] = []
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            oc = model.OperatorCodes(op.OpcodeIndex())
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            if code not in _WEIGHTED_OPS:
                continue
            tensor = sg.Tensors(int(op.InputsAsNumpy()[_WEIGHTED_OPS[code]]))
            if tensor.Type() != _INT8:
                continue
            raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
            if isinstance(raw, int):  # no constant data: a weight computed at run time
                continue
            shape = [int(d) for d in tensor.ShapeAsNumpy()]
            values = raw.view(np.int8).reshape(shape)
            q = tensor.Quantization()
            per_channel = q is not None and q.ScaleLength() > 1
            axis = q.QuantizedDimension() if per_channel else 0
            layers.append(LayerWeights(
                name=tensor.Name().decode(errors="replace"),
                shape=shape,
                params=int(values.size),
                zeros=int(np.count_nonzero(values == 0)),
                unique_values=_distinct_per_channel(values, axis, per_channel),
            ))
    except OSError as exc:
        raise ArtifactError(str(path), f"cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise ArtifactError(str(path), f"not a readable TFLite flatbuffer ({type(exc).__name__})") from None
    return WeightStats(layers=layers)
