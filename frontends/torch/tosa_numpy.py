"""The integer TOSA 1.0 arithmetic of the ops our delegated graphs hold, in numpy: the int8 accuracy of
the MLP on 10,000 images in 0.3 s, where the TOSA reference model (one C++ lambda per element) takes
about 10 s of CPU. Written from the TOSA specification's pseudo-code (CONV2D, DEPTHWISE_CONV2D,
AVG_POOL2D, MAX_POOL2D, RESCALE with single rounding (apply_scale_32/16), reciprocal_scale, CLAMP, ADD,
PAD, RESHAPE, TRANSPOSE); sums are exact (float GEMMs of integers whose every partial sum the float
type stores exactly, int64 elsewhere).

It is not the reference: frontends/torch/accuracy.py runs it only on graphs it parses without
`Unsupported` (and whose image axis tosa_worker.rebatch can move), and checks its logits on the
first images against the reference model's before using them. Anything the spec leaves to the
implementation, that these tests did not check against the reference model, or that the reference
model rejects (double or inexact rounding, unsigned rescales, a sum out of int32) raises
`Unsupported`, and the reference model evaluates instead.

    graph = TosaNumpyGraph(tosa_bytes)      # Unsupported if an op or attribute is outside the above
    (logits,) = graph.run([int8_images])    # leading axis: any number of images
"""
from __future__ import annotations

import numpy as np

SUPPORTED_OPS = frozenset({"CONST", "CONST_SHAPE", "RESHAPE", "TRANSPOSE", "CONV2D", "DEPTHWISE_CONV2D", "RESCALE",
                           "CLAMP", "ADD", "AVG_POOL2D", "MAX_POOL2D", "PAD"})
_INT32 = (-(1 << 31), (1 << 31) - 1)
_EXACT_SUM = float(1 << 52)  # float64 sums of integers are exact while below this


class Unsupported(Exception):
    """The graph holds something this evaluator does not compute exactly as the reference model."""


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise Unsupported(what)


def _dtypes() -> dict[int, type]:
    from tosa.DType import DType

    return {DType.INT8: np.int8, DType.INT16: np.int16, DType.INT32: np.int32, DType.INT64: np.int64, DType.BOOL: np.bool_}


def _attribute(op, cls):
    table = op.Attribute()
    attribute = cls()
    attribute.Init(table.Bytes, table.Pos)
    return attribute


def _ints(values) -> list[int]:
    return [int(v) for v in values] if not isinstance(values, int) else []


class TosaNumpyGraph:
    """A parsed single-block TOSA graph whose activations lead with the image axis (declared as 1)."""

    def __init__(self, graph: bytes) -> None:
        from tosa import Op, TosaGraph

        names = {v: k for k, v in vars(Op.Op).items() if not k.startswith("_")}
        root = TosaGraph.TosaGraph.GetRootAs(bytearray(graph), 0)
        _require(root.RegionsLength() == 1 and root.Regions(0).BlocksLength() == 1, "more than one region or block")
        block = root.Regions(0).Blocks(0)
        dtypes = _dtypes()
        self.types: dict[str, type] = {}
        self.constants: dict[str, np.ndarray] = {}
        for j in range(block.TensorsLength()):
            tensor = block.Tensors(j)
            name = tensor.Name().decode()
            _require(tensor.Type() in dtypes, f"tensor {name} of TOSA type {tensor.Type()}")
            self.types[name] = dtypes[tensor.Type()]
            if tensor.DataLength():
                shape = _ints(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else []
                data = np.frombuffer(tensor.DataAsNumpy().tobytes(), self.types[name]).copy()
                # zero points declared [1] may carry one value per channel: kept flat, read by `_scalar`
                self.constants[name] = data.reshape(shape) if data.size == int(np.prod(shape)) else data
        for j in range(block.ShapesLength()):
            shape = block.Shapes(j)
            values = shape.DataAsNumpy().tobytes() if shape.DataLength() else b""
            self.constants[shape.Name().decode()] = np.frombuffer(values, np.int64).copy()
        self.inputs = [block.Inputs(j).decode() for j in range(block.InputsLength())]
        self.input_shapes = {}
        for j in range(block.TensorsLength()):
            tensor = block.Tensors(j)
            if tensor.Name().decode() in self.inputs:
                self.input_shapes[tensor.Name().decode()] = _ints(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else []
        self.outputs = [block.Outputs(j).decode() for j in range(block.OutputsLength())]
        self.ops = []
        for i in range(block.OperatorsLength()):
            op = block.Operators(i)
            name = names.get(op.Op(), str(op.Op()))
            _require(name in SUPPORTED_OPS, f"op {name}")
            inputs = [op.Inputs(j).decode() for j in range(op.InputsLength())]
            outputs = [op.Outputs(j).decode() for j in range(op.OutputsLength())]
            if name in ("CONST", "CONST_SHAPE"):
                _require(all(o in self.constants for o in outputs), f"{name} without data")
                continue
            attributes = self._attributes(name, op)
            attributes["out"] = self.types[outputs[0]]
            self.ops.append((name, inputs, outputs, attributes))

    def _attributes(self, name: str, op) -> dict:
        from tosa import (AvgPool2dAttribute, ClampAttribute, Conv2dAttribute, DepthwiseConv2dAttribute,
                          MaxPool2dAttribute, RescaleAttribute, TransposeAttribute)
        from tosa.DType import DType
        from tosa.RoundingMode import RoundingMode

        if name in ("CONV2D", "DEPTHWISE_CONV2D"):
            cls = Conv2dAttribute.Conv2dAttribute if name == "CONV2D" else DepthwiseConv2dAttribute.DepthwiseConv2dAttribute
            a = _attribute(op, cls)
            _require(a.AccType() == DType.INT32, f"{name} accumulating in TOSA type {a.AccType()}")
            return {"pad": _ints(a.PadAsNumpy()), "stride": _ints(a.StrideAsNumpy()), "dilation": _ints(a.DilationAsNumpy())}
        if name in ("AVG_POOL2D", "MAX_POOL2D"):
            cls = AvgPool2dAttribute.AvgPool2dAttribute if name == "AVG_POOL2D" else MaxPool2dAttribute.MaxPool2dAttribute
            a = _attribute(op, cls)
            if name == "AVG_POOL2D":
                _require(a.AccType() == DType.INT32, f"AVG_POOL2D accumulating in TOSA type {a.AccType()}")
            return {"kernel": _ints(a.KernelAsNumpy()), "stride": _ints(a.StrideAsNumpy()), "pad": _ints(a.PadAsNumpy())}
        if name == "RESCALE":
            a = _attribute(op, RescaleAttribute.RescaleAttribute)
            # SINGLE_ROUND is what ExecuTorch's Arm backend emits and what the tests check against the
            # reference model; DOUBLE_ROUND and INEXACT_ROUND graphs go to the reference model
            _require(a.RoundingMode() == RoundingMode.SINGLE_ROUND, f"RESCALE rounding mode {a.RoundingMode()}")
            _require(not a.InputUnsigned() and not a.OutputUnsigned(), "unsigned RESCALE")
            return {"scale32": bool(a.Scale32()), "per_channel": bool(a.PerChannel())}
        if name == "CLAMP":
            a = _attribute(op, ClampAttribute.ClampAttribute)
            return {"min": a.MinValAsNumpy().tobytes(), "max": a.MaxValAsNumpy().tobytes()}
        if name == "TRANSPOSE":
            return {"perms": _ints(_attribute(op, TransposeAttribute.TransposeAttribute).PermsAsNumpy())}
        return {}

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs for `inputs` (in the block's input order), any number of images each."""
        _require(len(inputs) == len(self.inputs), f"{len(inputs)} inputs for a graph of {len(self.inputs)}")
        values = dict(self.constants)
        images = len(inputs[0])
        for name, x in zip(self.inputs, inputs):
            _require(x.dtype == self.types[name], f"input {name} of {x.dtype}")
            shape = self.input_shapes[name]
            _require(bool(shape) and shape[0] == 1 and x.size == images * int(np.prod(shape)), f"input {name} of shape {x.shape}")
            values[name] = np.ascontiguousarray(x).reshape(images, *shape[1:])  # its bytes, as the reference model reads them
        for name, ins, outs, attributes in self.ops:
            args = [values[i] for i in ins]
            out = _OPS[name](args, attributes, images)
            values[outs[0]] = out.astype(self.types[outs[0]], copy=False)
        return [values[o] for o in self.outputs]


# ---- the ops, as the specification's pseudo-code ---------------------------------------------

def _scalar(t: np.ndarray) -> int:
    """A zero point: one value, however many copies the tensor holds."""
    flat = np.asarray(t).reshape(-1)
    _require(flat.size > 0 and bool((flat == flat[0]).all()), "a zero point with different values")
    return int(flat[0])


def _int32(acc: np.ndarray, op: str) -> np.ndarray:
    _require(acc.size == 0 or (acc.min() >= _INT32[0] and acc.max() <= _INT32[1]), f"{op} result out of int32")
    return acc


def _padded(x: np.ndarray, pad: list[int], value: float) -> np.ndarray:
    """NHWC padded by [top, bottom, left, right]."""
    top, bottom, left, right = pad
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _windows(x: np.ndarray, kh: int, kw: int, stride: list[int], dilation: list[int]):
    """(ky, kx, the input rows/columns each output position reads at that kernel offset), NHWC."""
    n, h, w, _ = x.shape
    oh = (h - (kh - 1) * dilation[0] - 1) // stride[0] + 1
    ow = (w - (kw - 1) * dilation[1] - 1) // stride[1] + 1
    _require(oh > 0 and ow > 0, "empty convolution output")
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dilation[0], kx * dilation[1]
            yield ky, kx, x[:, y0:y0 + (oh - 1) * stride[0] + 1:stride[0], x0:x0 + (ow - 1) * stride[1] + 1:stride[1], :]


def _exact_float(x: np.ndarray, w: np.ndarray, taps_axes: tuple[int, ...], op: str) -> type:
    """float32 when no sum of products can reach 2**24 (every partial sum is then an exactly stored
    integer, in any order of summation), else float64 (2**52)."""
    bound = float(np.abs(x).max(initial=0)) * float(np.abs(w).sum(axis=taps_axes).max(initial=0))
    _require(bound < _EXACT_SUM, f"{op} sum too large")
    return np.float32 if bound < float(1 << 24) else np.float64


def _conv2d(args, a, images):
    x, w, bias, x_zp, w_zp = args
    oc, kh, kw, _ = w.shape
    xs = x.astype(np.int32) - _scalar(x_zp)
    ws = w.astype(np.int32) - _scalar(w_zp)
    dtype = _exact_float(xs, ws, (1, 2, 3), "CONV2D")
    xs = _padded(xs.astype(dtype), a["pad"], 0.0)  # outside the image counts 0 after the zero point
    ws = ws.astype(dtype)
    acc = None
    for ky, kx, window in _windows(xs, kh, kw, a["stride"], a["dilation"]):
        part = (window.reshape(-1, window.shape[-1]) @ ws[:, ky, kx, :].T).reshape(*window.shape[:3], oc)  # one GEMM
        acc = part if acc is None else acc + part
    return _int32(acc.astype(np.int64) + bias.astype(np.int64).reshape(-1), "CONV2D")


def _depthwise_conv2d(args, a, images):
    x, w, bias, x_zp, w_zp = args
    kh, kw, c, m = w.shape
    xs = x.astype(np.int32) - _scalar(x_zp)
    ws = w.astype(np.int32) - _scalar(w_zp)
    dtype = _exact_float(xs, ws, (0, 1), "DEPTHWISE_CONV2D")
    xs = _padded(xs.astype(dtype), a["pad"], 0.0)
    ws = ws.astype(dtype)
    acc = part = None
    for ky, kx, window in _windows(xs, kh, kw, a["stride"], a["dilation"]):
        x_part, w_part = (window[..., :, None], ws[ky, kx]) if m > 1 else (window, ws[ky, kx, :, 0])  # (N, OH, OW, C[, M])
        if acc is None:
            acc = x_part * w_part
            part = np.empty_like(acc)
        else:
            acc += np.multiply(x_part, w_part, out=part)
    acc = acc.reshape(*acc.shape[:3], c * m)
    return _int32(acc.astype(np.int64) + bias.astype(np.int64).reshape(-1), "DEPTHWISE_CONV2D")


def _apply_scale(value: np.ndarray, multiplier: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, int, int]:
    """apply_scale_32 with single rounding (apply_scale_16 is the same) on an int64 array it owns, in
    place; multiplier and shift broadcast against it. Returns (result, its least, its greatest value).
    The REQUIREs are checked on the value's bounds per multiplier/shift: the result grows with the value."""
    _require(bool((multiplier >= 0).all()) and bool(((shift >= 2) & (shift <= 62)).all()), "RESCALE multiplier/shift")
    limit = np.left_shift(np.int64(1), shift - 1)
    lo, hi = _bounds(value, multiplier, shift)
    _require(bool(((lo >= -limit) & (hi < limit)).all()), "RESCALE value out of range for its shift")
    _require(max(-int(lo.min(initial=0)), int(hi.max(initial=0))) < (1 << 32), "RESCALE value wider than 32 bits")
    least, greatest = int(((lo * multiplier + limit) >> shift).min()), int(((hi * multiplier + limit) >> shift).max())
    _require(least >= _INT32[0] and greatest <= _INT32[1], "RESCALE result out of int32")
    np.multiply(value, multiplier, out=value)  # fits int64: |value| < 2**32, multiplier < 2**31
    np.add(value, limit, out=value)  # round half up
    np.right_shift(value, shift, out=value)
    return value, least, greatest


def _bounds(value: np.ndarray, *per: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The least and greatest value over the axes the `per` arrays broadcast along (kept as size 1)."""
    shape = np.broadcast_shapes(*(p.shape for p in per))
    shape = (1,) * (value.ndim - len(shape)) + tuple(shape)
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and value.shape[i] != 1)
    if value.size == 0:
        return np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    if not axes:
        return value, value
    return value.min(axis=axes, keepdims=True), value.max(axis=axes, keepdims=True)


def _rescale(args, a, images):
    x, multiplier, shift, x_zp, out_zp = args
    value = x.astype(np.int64)
    value -= _scalar(x_zp)
    m, s = multiplier.astype(np.int64).reshape(-1), shift.astype(np.int64).reshape(-1)
    if not a["per_channel"]:
        m, s = m[:1], s[:1]
    _require(a["scale32"] or x.dtype != np.int32, "16-bit RESCALE of an int32 input")
    scaled, least, greatest = _apply_scale(value, m, s)
    zp = _scalar(out_zp)
    _require(least + zp >= _INT32[0] and greatest + zp <= _INT32[1], "RESCALE result plus output zero point out of int32")
    scaled += zp
    return _clip_to(scaled, a["out"])


def _clip_to(x: np.ndarray, dtype: type) -> np.ndarray:
    """In place."""
    info = np.iinfo(dtype)
    return np.clip(x, info.min, info.max, out=x)


def _clamp(args, a, images):
    (x,) = args
    lo = np.frombuffer(a["min"], x.dtype)[0]
    hi = np.frombuffer(a["max"], x.dtype)[0]
    return np.clip(x, lo, hi)


def _add(args, a, images):
    x, y = args
    _require(x.dtype == np.int32 and y.dtype == np.int32, "ADD of non-int32 tensors")
    return _int32(x.astype(np.int64) + y.astype(np.int64), "ADD")


def _pool_windows(x: np.ndarray, a: dict, value):
    kh, kw = a["kernel"]
    return _windows(_padded(x, a["pad"], value), kh, kw, a["stride"], [1, 1])


def _reciprocal_scale(count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    k = np.array([int(c - 1).bit_length() for c in count.reshape(-1)], np.int64).reshape(count.shape)  # 32 - clz(c-1)
    numerator = ((1 << 30) + 1) << k
    return numerator // count, 30 + k


def _avg_pool2d(args, a, images):
    x, x_zp, out_zp = args
    xs = x.astype(np.int64) - _scalar(x_zp)
    ones = np.ones((1, *x.shape[1:3], 1), np.int64)
    acc = sum(window for _, _, window in _pool_windows(xs, a, 0))  # padding adds nothing and is not counted
    count = sum(window for _, _, window in _pool_windows(ones, a, 0))
    multiplier, shift = _reciprocal_scale(count)
    scaled, _, _ = _apply_scale(acc, multiplier, shift)
    return _clip_to(_int32(scaled + _scalar(out_zp), "AVG_POOL2D"), a["out"])


def _max_pool2d(args, a, images):
    (x,) = args
    lowest = np.iinfo(x.dtype).min
    out = None
    for _, _, window in _pool_windows(x, a, lowest):
        out = window if out is None else np.maximum(out, window)
    return out


def _pad(args, a, images):
    x, padding, value = args[0], args[1], args[2] if len(args) > 2 else np.zeros(1, args[0].dtype)
    pairs = np.asarray(padding, np.int64).reshape(-1, 2)
    _require(len(pairs) == x.ndim and pairs[0].tolist() == [0, 0], "PAD of the image axis")
    return np.pad(x, [tuple(p) for p in pairs.tolist()], constant_values=_scalar(value))


def _reshape(args, a, images):
    x, shape = args
    target = [int(v) for v in shape]
    _require(bool(target) and target[0] == 1, "RESHAPE that moves the image axis")
    return x.reshape(images, *target[1:])


def _transpose(args, a, images):
    (x,) = args
    _require(a["perms"][:1] == [0], "TRANSPOSE that moves the image axis")
    return np.transpose(x, a["perms"])


_OPS = {"CONV2D": _conv2d, "DEPTHWISE_CONV2D": _depthwise_conv2d, "RESCALE": _rescale, "CLAMP": _clamp, "ADD": _add,
        "AVG_POOL2D": _avg_pool2d, "MAX_POOL2D": _max_pool2d, "PAD": _pad, "RESHAPE": _reshape, "TRANSPOSE": _transpose}
