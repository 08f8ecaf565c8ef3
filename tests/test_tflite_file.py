"""The one framework-free .tflite reader: operators, tensor types and int8 weights of hand-built
flatbuffers (no tensorflow needed), and one clear ArtifactError for every kind of bad file."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from condition.backend.tflite_file import INT8, read_tflite, require_int8
from condition.errors import ArtifactError

FLOAT32 = 0
FULLY_CONNECTED = 9


def _vector(builder, start, items, prepend) -> int:
    start(builder, len(items))
    for item in reversed(items):
        prepend(item)
    return builder.EndVector()


def tiny_tflite(path: Path, weights: np.ndarray, tensor_type: int = INT8, scales: int = 2) -> Path:
    """One FULLY_CONNECTED op: input [1, 4] → output [1, 2] through constant weights [2, 4]."""
    import flatbuffers
    from ethosu.vela.tflite import Buffer, Model, Operator, OperatorCode, QuantizationParameters, SubGraph, Tensor

    b = flatbuffers.Builder(1024)
    data = b.CreateNumpyVector(weights.astype(np.int8).view(np.uint8).ravel())
    Buffer.BufferStart(b)
    empty = Buffer.BufferEnd(b)
    Buffer.BufferStart(b)
    Buffer.BufferAddData(b, data)
    weight_buffer = Buffer.BufferEnd(b)
    scale = b.CreateNumpyVector(np.full(scales, 0.1, dtype=np.float32))
    QuantizationParameters.QuantizationParametersStart(b)
    QuantizationParameters.QuantizationParametersAddScale(b, scale)
    quant = QuantizationParameters.QuantizationParametersEnd(b)
    tensors = []
    for name, shape, buffer in (("input", [1, 4], 0), ("fc/weights", list(weights.shape), 1), ("output", [1, 2], 0)):
        name_off, shape_off = b.CreateString(name), b.CreateNumpyVector(np.array(shape, dtype=np.int32))
        Tensor.TensorStart(b)
        Tensor.TensorAddName(b, name_off)
        Tensor.TensorAddShape(b, shape_off)
        Tensor.TensorAddType(b, tensor_type)
        Tensor.TensorAddBuffer(b, buffer)
        if buffer:
            Tensor.TensorAddQuantization(b, quant)
        tensors.append(Tensor.TensorEnd(b))
    inputs, outputs = b.CreateNumpyVector(np.array([0, 1, -1], dtype=np.int32)), b.CreateNumpyVector(np.array([2], dtype=np.int32))
    Operator.OperatorStart(b)
    Operator.OperatorAddOpcodeIndex(b, 0)
    Operator.OperatorAddInputs(b, inputs)
    Operator.OperatorAddOutputs(b, outputs)
    op = Operator.OperatorEnd(b)
    tensor_vec = _vector(b, SubGraph.SubGraphStartTensorsVector, tensors, b.PrependUOffsetTRelative)
    op_vec = _vector(b, SubGraph.SubGraphStartOperatorsVector, [op], b.PrependUOffsetTRelative)
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, tensor_vec)
    SubGraph.SubGraphAddOperators(b, op_vec)
    subgraph = SubGraph.SubGraphEnd(b)
    OperatorCode.OperatorCodeStart(b)
    OperatorCode.OperatorCodeAddBuiltinCode(b, FULLY_CONNECTED)
    OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, FULLY_CONNECTED)
    code = OperatorCode.OperatorCodeEnd(b)
    codes = _vector(b, Model.ModelStartOperatorCodesVector, [code], b.PrependUOffsetTRelative)
    subgraphs = _vector(b, Model.ModelStartSubgraphsVector, [subgraph], b.PrependUOffsetTRelative)
    buffers = _vector(b, Model.ModelStartBuffersVector, [empty, weight_buffer], b.PrependUOffsetTRelative)
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, codes)
    Model.ModelAddSubgraphs(b, subgraphs)
    Model.ModelAddBuffers(b, buffers)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


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
