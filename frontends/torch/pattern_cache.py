"""torchao's PT2E passes export the same small pattern functions again every time they run, and
for conv kinds the graph does not have.

`convert_pt2e` folds conv-BatchNorm by matching 12 quantized patterns for each of 4 conv kinds,
each pattern and its replacement made by `torch.export` of a tiny function: 96 exports for every
QAT of a model with BatchNorm (and more for prepare_qat_pt2e's fusion and for each train/eval switch
of an exported graph), most of the 30 s a prune → QAT of DS-CNN took on one core (10 s with this,
1.8 s for the next one in the same process; the same .pte bytes). The patterns depend only on the function's
code, the values it closes over and the shapes and dtypes of its example inputs, never on the
example values (they are graph inputs), so one export per pattern per process is enough: the
graph is kept and each caller gets its own copy (the passes edit the graphs they are given).
The upstream fix was to be "cache the patterns if possible" (pytorch/pytorch#116440); until it
lands this wraps torchao's `_get_aten_graph_module_for_pattern`. A pattern whose closure holds
anything but plain values and functions is exported as before. Its conv-BatchNorm helpers also
run for conv1d and the transposed convs on a graph that has none of them: those are skipped.

    pattern_cache.install()   # before prepare_qat_pt2e / convert_pt2e / move_exported_model_to_*
"""
from __future__ import annotations

import copy
import functools
import types
from typing import Any, Callable, Hashable

import torch

_graphs: dict[Hashable, torch.fx.GraphModule] = {}


class _Uncacheable(Exception):
    pass


def install() -> None:
    """Wrap torchao's pattern export where its passes look it up, and its conv-BatchNorm helpers
    (idempotent)."""
    from torchao.quantization.pt2e import qat_utils, utils

    for module in (utils, qat_utils):
        current = getattr(module, "_get_aten_graph_module_for_pattern")
        if not getattr(current, "_condition_cached", False):
            setattr(module, "_get_aten_graph_module_for_pattern", _cached(current))
    for name in ("_fuse_conv_bn_qat_helper", "_fold_conv_bn_qat_helper"):
        current = getattr(qat_utils, name)
        if not getattr(current, "_condition_cached", False):
            setattr(qat_utils, name, _only_for_present_convs(current))


def _only_for_present_convs(helper: Callable[..., torch.fx.GraphModule]) -> Callable[..., torch.fx.GraphModule]:
    """torchao runs each conv-BatchNorm helper for conv1d, conv2d, conv_transpose1d and
    conv_transpose2d in turn; a helper can only rewrite a graph that holds its conv, so for a conv
    kind the graph lacks it is skipped (the next helper normalises the graph the same way)."""
    @functools.wraps(helper)
    def run(m: torch.fx.GraphModule, conv_fn: Callable, *args: Any, **kwargs: Any) -> torch.fx.GraphModule:
        op = f"aten.{getattr(conv_fn, '__name__', '')}."
        if op != "aten.." and not any(str(n.target).startswith(op) for n in m.graph.nodes if n.op == "call_function"):
            return m
        return helper(m, conv_fn, *args, **kwargs)

    run._condition_cached = True  # type: ignore[attr-defined]
    return run


def _cached(export: Callable[..., torch.fx.GraphModule]) -> Callable[..., torch.fx.GraphModule]:
    @functools.wraps(export)
    def get(pattern: Callable, example_inputs: tuple[Any, ...], is_cuda: bool = False, **kwargs: Any) -> torch.fx.GraphModule:
        try:
            key = pattern_key(pattern, example_inputs, is_cuda, kwargs)
        except _Uncacheable:
            return export(pattern, example_inputs, is_cuda, **kwargs)
        if key not in _graphs:
            _graphs[key] = export(pattern, example_inputs, is_cuda, **kwargs)
        return copy.deepcopy(_graphs[key])

    get._condition_cached = True  # type: ignore[attr-defined]
    return get


def pattern_key(pattern: Callable, example_inputs: tuple[Any, ...], is_cuda: bool, kwargs: dict[str, Any]) -> Hashable:
    """What the exported pattern graph depends on; _Uncacheable when that cannot be told safely.
    torchao hands the pattern functions over in its WrapperModule (a module holding only `fn`)."""
    from torchao.quantization.pt2e.export_utils import WrapperModule

    if type(pattern) is WrapperModule and not list(pattern.parameters()) and not list(pattern.buffers()):
        pattern = pattern.fn
    inputs = tuple(_input(x) for x in example_inputs)
    kw = tuple(sorted((k, _input(v)) for k, v in kwargs.items()))
    return _function(pattern), inputs, kw, bool(is_cuda)


def _function(fn: Callable) -> Hashable:
    """A Python function by its code and the values it closes over and defaults to."""
    code = getattr(fn, "__code__", None)
    if code is None:
        raise _Uncacheable
    closure = tuple(_value(cell.cell_contents) for cell in (fn.__closure__ or ()))
    defaults = tuple(_value(v) for v in (fn.__defaults__ or ()))
    kw_defaults = tuple(sorted((k, _value(v)) for k, v in (fn.__kwdefaults__ or {}).items()))
    return code, closure, defaults, kw_defaults


def _input(value: Any) -> Hashable:
    """An example input: a tensor is traced symbolically, so its shape and dtype are what count."""
    if isinstance(value, torch.Tensor):
        return "tensor", tuple(value.shape), str(value.dtype), value.device.type
    return _value(value)


def _value(value: Any) -> Hashable:
    """A value the pattern's code reads: plain values by value; functions (F.conv2d, aten ops, the
    builder's own helpers) by what they are, never by id (a freed function's id is reused)."""
    if value is None or isinstance(value, bool | int | float | str):
        return type(value).__name__, value
    if isinstance(value, tuple):
        return "tuple", tuple(_value(v) for v in value)
    if isinstance(value, types.FunctionType):
        return "function", _function(value)
    if isinstance(value, types.BuiltinFunctionType):
        return "builtin", getattr(value, "__module__", None), value.__qualname__
    if isinstance(value, torch._ops.OpOverload | torch._ops.OpOverloadPacket):
        return "op", str(value)
    raise _Uncacheable
