"""NPU-friendly lowering of a Keras model before conversion: layers whose TFLite op Vela runs slowly
become layers of the same function whose op it runs fast.

`GlobalAveragePooling2D` converts to TFLite MEAN, which Vela 5.2 lowers to a DepthwiseConv2D plus a Mul
(10,940 NPU cycles on a small MobileNet-style net, U85-128), while torch's `AdaptiveAvgPool2d(1)` reaches
Vela as one AvgPool (2,912). An `AveragePooling2D` over the whole map (VALID, stride 1) followed by a
`Flatten` computes the same mean and converts to AVERAGE_POOL_2D + RESHAPE, which Vela runs as that one
AvgPool: the tf side gets the torch side's cycles (a user's MobileNet-style net on U85-128: 27,439 →
25,432 NPU cycles, torch's figure; a `Reshape((c,))` instead of the Flatten costs a 120-cycle MemoryCopy).
Float outputs are equal up to float rounding; the int8 model differs only in that the pooling's output
shares its input's scale (the converter's rule for AVERAGE_POOL_2D), which the tests bound.

The rewrite edits the functional/Sequential config (one layer swapped, one weightless layer inserted,
consumers rewired) and rebuilds the model from it with the original weights, so tfmot's wrappers
(quantize, prune, cluster) see ordinary built-in layers. A model it cannot rebuild (a subclassed
model, a shared pooling layer, a custom layer without its class) is left as it is, and the note says why.

    model, notes = npu_friendly(model)
"""
from __future__ import annotations

import copy
import logging
from typing import Any

from condition.errors import one_line
from condition.frontends.tf import keras_modules

log = logging.getLogger(__name__)

# Vela's AVERAGE_POOL_2D constraints for VALID padding (tflite_supported_operators.py, Vela 5.2.0)
MAX_POOL_HEIGHT = 256
MAX_POOL_AREA = 256 * 256


def npu_friendly(model: Any) -> tuple[Any, list[str]]:
    """`model` with every GlobalAveragePooling2D Vela can run as an AvgPool rewritten (a new model, the
    caller's is untouched), and one note per rewrite or per pooling left as it was."""
    _, keras, _ = keras_modules()
    L = keras.layers
    pools = [layer for layer in _layers(model) if type(layer) is L.GlobalAveragePooling2D]
    if not pools:
        return model, []
    notes: list[str] = []
    rewrite: dict[str, tuple[int, int, bool]] = {}  # pooling layer → window height, width, keepdims
    for layer in pools:
        reason = _cannot_rewrite(layer, model)
        if reason:
            notes.append(f"{layer.name} (GlobalAveragePooling2D) kept as TFLite MEAN (Vela: DepthwiseConv2D + Mul): {reason}")
            continue
        _, h, w, _ = layer.input_shape
        rewrite[layer.name] = (h, w, bool(layer.get_config().get("keepdims", False)))
    if not rewrite:
        return model, notes
    try:
        new = _rebuilt(model, rewrite)
    except Exception as exc:  # from_config of a model with custom layers, or a config layout we do not know
        log.info("GlobalAveragePooling2D rewrite failed: %s", exc)
        return model, notes + [f"{name} (GlobalAveragePooling2D) kept as TFLite MEAN: the model could not be rebuilt "
                               f"({type(exc).__name__}: {one_line(exc)})" for name in rewrite]
    for name, (h, w, keepdims) in rewrite.items():
        notes.append(f"rewrite: {name} GlobalAveragePooling2D → AveragePooling2D({h}×{w}, valid)"
                     + ("" if keepdims else " + Flatten")
                     + " (TFLite MEAN → AVERAGE_POOL_2D: one Vela AvgPool instead of DepthwiseConv2D + Mul)")
    return new, notes


def _layers(model: Any) -> list[Any]:
    return list(getattr(model, "layers", []))


def _cannot_rewrite(layer: Any, model: Any) -> str:
    if not getattr(model, "_is_graph_network", False):
        return "a subclassed Keras model (only Sequential and functional models can be rebuilt)"
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        return "channels_first pooling"
    shape = layer.input_shape
    if not isinstance(shape, tuple) or len(shape) != 4 or any(d is None for d in shape[1:]):
        return f"input shape {shape} not fixed"
    _, h, w, _ = shape
    if h > MAX_POOL_HEIGHT or h * w > MAX_POOL_AREA:
        return f"a {h}×{w} window is beyond Vela's AvgPool limits (height ≤ {MAX_POOL_HEIGHT}, area ≤ {MAX_POOL_AREA})"
    if len(layer.inbound_nodes) != 1:
        return "the layer is called more than once"
    return ""


def _pool_config(name: str, h: int, w: int, dtype: Any) -> dict[str, Any]:
    return {"class_name": "AveragePooling2D",
            "config": {"name": name, "trainable": True, "dtype": dtype, "pool_size": [h, w], "strides": [1, 1],
                       "padding": "valid", "data_format": "channels_last"}}


def _flatten_config(name: str, dtype: Any) -> dict[str, Any]:
    return {"class_name": "Flatten", "config": {"name": name, "trainable": True, "dtype": dtype, "data_format": "channels_last"}}


def _rebuilt(model: Any, rewrite: dict[str, tuple[int, int, bool]]) -> Any:
    """The model rebuilt from its edited config, with every layer's weights copied by name."""
    _, keras, _ = keras_modules()
    config = copy.deepcopy(model.get_config())
    sequential = isinstance(model, keras.Sequential)
    layers: list[dict[str, Any]] = config["layers"]
    out: list[dict[str, Any]] = []
    renamed: dict[str, str] = {}  # pooling layer → the layer that now gives its output
    taken = {layer.name for layer in model.layers}
    for entry in layers:
        name = entry["config"].get("name")
        if name not in rewrite:
            out.append(entry)
            continue
        h, w, keepdims = rewrite[name]
        dtype = entry["config"].get("dtype")
        pool = _pool_config(name, h, w, dtype)
        if not sequential:
            pool["name"], pool["inbound_nodes"] = name, entry["inbound_nodes"]
        out.append(pool)
        if keepdims:
            continue
        flatten_name = _unique(f"{name}_flatten", taken)
        flatten = _flatten_config(flatten_name, dtype)
        if not sequential:
            flatten["name"], flatten["inbound_nodes"] = flatten_name, [[[name, 0, 0, {}]]]
        out.append(flatten)
        renamed[name] = flatten_name
    config["layers"] = out
    if sequential:
        new = keras.Sequential.from_config(config)
    else:
        for entry in out:
            if entry["config"].get("name") in renamed.values():
                continue
            entry["inbound_nodes"] = _rewired(entry.get("inbound_nodes", []), renamed)
        config["output_layers"] = _rewired(config["output_layers"], renamed)
        new = keras.Model.from_config(config)
    for layer in new.layers:
        if layer.weights:
            layer.set_weights(model.get_layer(layer.name).get_weights())
    return new


def _rewired(value: Any, renamed: dict[str, str]) -> Any:
    """Inbound-node lists (nested lists whose leaves start with a layer name) pointing at the new layers."""
    if isinstance(value, list):
        if value and isinstance(value[0], str) and value[0] in renamed:
            return [renamed[value[0]], *value[1:]]
        return [_rewired(v, renamed) for v in value]
    return value


def _unique(name: str, taken: set[str]) -> str:
    candidate, i = name, 1
    while candidate in taken:
        candidate, i = f"{name}_{i}", i + 1
    taken.add(candidate)
    return candidate
