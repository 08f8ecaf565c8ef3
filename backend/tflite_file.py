"""A .tflite read without tensorflow: its main subgraph's operators and tensors, through Vela's
generated flatbuffer classes. The one reader behind `measure`'s int8 check, Vela's NPU/CPU
placement count and the weight statistics, so all three fail on a bad file the same way.

    graph = read_tflite("model_int8.tflite")
    graph.operator_names          # ["Reshape", "FullyConnected", ...]; after Vela: ["ethos-u"]
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from condition.errors import ArtifactError

INT8 = 9  # tflite TensorType.INT8
_IDENTIFIER = b"TFL3"  # the file identifier at bytes 4..8 of every TFLite flatbuffer


@dataclass(frozen=True)
class Tensor:
    name: str
    type: int  # tflite TensorType (INT8 = 9)
    shape: tuple[int, ...]
    data: np.ndarray | None = field(repr=False)  # the constant buffer's bytes (uint8); None when computed at run time
    scales: int  # quantization scales: more than one means per-channel
    quantized_dimension: int

    def values(self) -> np.ndarray:
        """The constant data as int8 in the tensor's shape (only for INT8 tensors with data)."""
        assert self.data is not None and self.type == INT8
        return self.data.view(np.int8).reshape(self.shape)


@dataclass(frozen=True)
class Operator:
    name: str  # Vela's builtin name (e.g. "FullyConnected") or the custom code ("ethos-u")
    builtin_code: int
    inputs: tuple[int, ...]  # tensor indices; -1 for an omitted optional input
    outputs: tuple[int, ...] = ()  # tensor indices


@dataclass(frozen=True)
class TfliteGraph:
    """The main subgraph (the one that runs) of a .tflite."""

    path: Path
    operators: tuple[Operator, ...]
    tensors: tuple[Tensor, ...]

    @property
    def operator_names(self) -> list[str]:
        return [op.name for op in self.operators]

    def has_int8(self) -> bool:
        return any(t.type == INT8 for t in self.tensors)


def read_tflite(path: str | Path) -> TfliteGraph:
    """Operators and tensors of the main subgraph; ArtifactError (naming the file) when unreadable."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(str(path), "file not found") from None
    except OSError as exc:
        raise ArtifactError(str(path), f"cannot read ({exc.strerror or exc})") from None
    if len(data) < 8 or data[4:8] != _IDENTIFIER:
        raise ArtifactError(str(path), "not a TFLite flatbuffer (no TFL3 identifier; corrupt or another format)")
    try:
        return _parse(path, data)
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise ArtifactError(str(path), f"corrupt TFLite flatbuffer ({type(exc).__name__})") from None


def require_int8(path: str | Path) -> TfliteGraph:
    """The graph, or ArtifactError unless it carries int8 tensors (what Vela compiles)."""
    graph = read_tflite(path)
    if not graph.has_int8():
        raise ArtifactError(str(path), "float-only model: the Ethos-U runs int8; quantize it first "
                            "(e.g. `condition tf post-training-quant --model your.keras`)")
    return graph


def _parse(path: Path, data: bytes) -> TfliteGraph:
    from ethosu.vela.tflite.Model import Model
    from ethosu.vela.tflite_mapping import builtin_operator_map

    model = Model.GetRootAsModel(data, 0)
    codes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        entry = builtin_operator_map.get(code)
        name = oc.CustomCode().decode() if oc.CustomCode() else entry[0].name if entry else f"builtin_{code}"
        codes.append((name, code))
    sg = model.Subgraphs(0)
    operators = []
    for o in range(sg.OperatorsLength()):
        op = sg.Operators(o)
        name, code = codes[op.OpcodeIndex()]
        operators.append(Operator(name, code, tuple(int(i) for i in _array(op.InputsAsNumpy())),
                                  tuple(int(i) for i in _array(op.OutputsAsNumpy()))))
    tensors = []
    for t in range(sg.TensorsLength()):
        tensor = sg.Tensors(t)
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        q = tensor.Quantization()
        tensors.append(Tensor(
            name=tensor.Name().decode(errors="replace"),
            type=tensor.Type(),
            shape=tuple(int(d) for d in _array(tensor.ShapeAsNumpy())),
            data=None if isinstance(raw, int) else raw,
            scales=q.ScaleLength() if q is not None else 0,
            quantized_dimension=q.QuantizedDimension() if q is not None else 0,
        ))
    return TfliteGraph(path, tuple(operators), tuple(tensors))


def _array(value: Any) -> Any:
    """flatbuffers returns 0 instead of an empty array for an absent vector."""
    return () if isinstance(value, int) else value


@dataclass(frozen=True)
class TensorSpec:
    """A tensor of a .tflite `write_one_op_tflite` builds: constant when it has `data`, quantized when it has `scales`."""

    name: str
    shape: tuple[int, ...]
    type: int = INT8
    data: np.ndarray | None = None
    scales: tuple[float, ...] = ()
    zero_points: tuple[int, ...] = ()


@dataclass(frozen=True)
class OpSpec:
    """One operator of a .tflite `write_tflite` builds: builtin code, tensor indices, options as
    (BuiltinOptions type, a function builder → options offset) or None."""

    builtin_code: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: tuple[int, Any] | None = None


def write_one_op_tflite(path: str | Path, tensors: list[TensorSpec], builtin_code: int, inputs: tuple[int, ...],
                        outputs: tuple[int, ...], options: tuple[int, Any] | None = None) -> Path:
    """A .tflite of one builtin operator, built with Vela's flatbuffer classes (no framework): the one-op
    models `condition advise` compiles to estimate a rewrite, and the tests' hand-made files. `options` is
    (BuiltinOptions type, a function builder → options offset)."""
    return write_tflite(path, tensors, [OpSpec(builtin_code, inputs, outputs, options)])


def write_tflite(path: str | Path, tensors: list[TensorSpec], ops: list[OpSpec]) -> Path:
    """A .tflite of `ops` in order over `tensors` (no framework): graph inputs are the tensors without data
    that no op writes, graph outputs those no op reads."""
    import flatbuffers
    from ethosu.vela.tflite import Buffer, Model, Operator, OperatorCode, QuantizationParameters, SubGraph, Tensor

    b = flatbuffers.Builder(1024)
    def vector(start: Any, items: list[int]) -> int:
        start(b, len(items))
        for item in reversed(items):
            b.PrependUOffsetTRelative(item)
        return b.EndVector()

    def numbers(values: Any, dtype: Any) -> int:
        return b.CreateNumpyVector(np.asarray(values, dtype=dtype).ravel())

    buffers = []
    Buffer.BufferStart(b)
    buffers.append(Buffer.BufferEnd(b))  # buffer 0: empty, for tensors computed at run time
    tensor_offsets = []
    for spec in tensors:
        buffer = 0
        if spec.data is not None:
            data = numbers(spec.data.view(np.uint8), np.uint8)
            Buffer.BufferStart(b)
            Buffer.BufferAddData(b, data)
            buffers.append(Buffer.BufferEnd(b))
            buffer = len(buffers) - 1
        quant = None
        if spec.scales:
            scale = numbers(spec.scales, np.float32)
            zero = numbers(spec.zero_points, np.int64) if spec.zero_points else None
            QuantizationParameters.QuantizationParametersStart(b)
            QuantizationParameters.QuantizationParametersAddScale(b, scale)
            if zero is not None:
                QuantizationParameters.QuantizationParametersAddZeroPoint(b, zero)
            quant = QuantizationParameters.QuantizationParametersEnd(b)
        name, shape = b.CreateString(spec.name), numbers(spec.shape, np.int32)
        Tensor.TensorStart(b)
        Tensor.TensorAddName(b, name)
        Tensor.TensorAddShape(b, shape)
        Tensor.TensorAddType(b, spec.type)
        Tensor.TensorAddBuffer(b, buffer)
        if quant is not None:
            Tensor.TensorAddQuantization(b, quant)
        tensor_offsets.append(Tensor.TensorEnd(b))
    codes_used = sorted({op.builtin_code for op in ops})
    op_offsets = []
    for op in ops:
        built_options = op.options[1](b) if op.options else None
        ins, outs = numbers(op.inputs, np.int32), numbers(op.outputs, np.int32)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, codes_used.index(op.builtin_code))
        Operator.OperatorAddInputs(b, ins)
        Operator.OperatorAddOutputs(b, outs)
        if op.options:
            Operator.OperatorAddBuiltinOptionsType(b, op.options[0])
            Operator.OperatorAddBuiltinOptions(b, built_options)
        op_offsets.append(Operator.OperatorEnd(b))
    tensor_vec = vector(SubGraph.SubGraphStartTensorsVector, tensor_offsets)
    op_vec = vector(SubGraph.SubGraphStartOperatorsVector, op_offsets)
    written = {i for op in ops for i in op.outputs}
    read = {i for op in ops for i in op.inputs}
    graph_ins = numbers([i for i in sorted(read) if i >= 0 and tensors[i].data is None and i not in written], np.int32)
    graph_outs = numbers([i for i in sorted(written) if i not in read], np.int32)
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, tensor_vec)
    SubGraph.SubGraphAddInputs(b, graph_ins)
    SubGraph.SubGraphAddOutputs(b, graph_outs)
    SubGraph.SubGraphAddOperators(b, op_vec)
    subgraph = SubGraph.SubGraphEnd(b)
    code_offsets = []
    for code in codes_used:
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddVersion(b, 2)
        code_offsets.append(OperatorCode.OperatorCodeEnd(b))
    codes = vector(Model.ModelStartOperatorCodesVector, code_offsets)
    subgraphs = vector(Model.ModelStartSubgraphsVector, [subgraph])
    buffer_vec = vector(Model.ModelStartBuffersVector, buffers)
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, codes)
    Model.ModelAddSubgraphs(b, subgraphs)
    Model.ModelAddBuffers(b, buffer_vec)
    b.Finish(Model.ModelEnd(b), file_identifier=_IDENTIFIER)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(b.Output()))
    return path
