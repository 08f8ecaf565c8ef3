"""The one framework-free .tflite reader: operators, tensor types and int8 weights of hand-built
flatbuffers (no tensorflow needed), and one clear ArtifactError for every kind of bad file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from condition.backend.tflite_file import INT8, TensorSpec, read_tflite, require_int8, write_one_op_tflite
from condition.errors import ArtifactError

FLOAT32 = 0
FULLY_CONNECTED = 9


def tiny_tflite(path: Path, weights: np.ndarray, tensor_type: int = INT8, scales: int = 2) -> Path:
    """One FULLY_CONNECTED op: input [1, 4] → output [1, 2] through constant weights [2, 4]."""
    tensors = [TensorSpec("input", (1, 4), tensor_type),
               TensorSpec("fc/weights", weights.shape, tensor_type, weights.astype(np.int8), (0.1,) * scales),
               TensorSpec("output", (1, 2), tensor_type)]
    return write_one_op_tflite(path, tensors, FULLY_CONNECTED, (0, 1, -1), (2,))


WEIGHTS = np.array([[0, 0, 3, -3], [5, 5, 0, 7]], dtype=np.int8)


def test_reads_operators_tensors_and_int8_weights(tmp_path) -> None:
    graph = require_int8(tiny_tflite(tmp_path / "fc.tflite", WEIGHTS))
    assert graph.operator_names == ["FullyConnected"]
    assert graph.operators[0].builtin_code == FULLY_CONNECTED and graph.operators[0].inputs == (0, 1, -1)
    assert [graph.tensors[i].name for i in graph.operators[0].outputs] == ["output"]
    weights = graph.tensors[1]
    assert (weights.name, weights.shape, weights.scales) == ("fc/weights", (2, 4), 2)
    assert np.array_equal(weights.values(), WEIGHTS)
    assert graph.tensors[0].data is None  # activations have no constant buffer


def test_weight_stats_read_through_it(tmp_path) -> None:
    from condition.frontends.tf.weights import weight_stats  # no tensorflow import: reads the flatbuffer only

    stats = weight_stats(tiny_tflite(tmp_path / "fc.tflite", WEIGHTS))
    (layer,) = stats.layers
    # named after the op's output tensor (the converter's weight names carry no layer): here "output"
    assert (layer.name, layer.params, layer.zeros, layer.unique_values) == ("output", 8, 3, 3)  # per channel: {0,3,-3}, {5,0,7}


def test_float_only_is_refused_with_advice(tmp_path) -> None:
    path = tiny_tflite(tmp_path / "float.tflite", WEIGHTS, tensor_type=FLOAT32)
    assert read_tflite(path).operator_names == ["FullyConnected"]
    with pytest.raises(ArtifactError, match="float-only model.*quantize it first"):
        require_int8(path)


@pytest.mark.parametrize("content,problem", [
    (None, "file not found"),
    (b"definitely not a flatbuffer", "not a TFLite flatbuffer"),
    (b"\x18\x00\x00\x00TFL3" + b"\xff" * 40, "corrupt TFLite flatbuffer"),
])
def test_bad_files_are_one_artifact_error(tmp_path, content, problem) -> None:
    path = tmp_path / "bad.tflite"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ArtifactError, match=problem) as err:
        read_tflite(path)
    assert str(path) in str(err.value)
