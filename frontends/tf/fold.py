"""Fold each BatchNormalization into the convolution right before it (w·γ/√(σ²+ε), β − μ·γ/√(σ²+ε)).

Why before clustering: the TFLite converter folds BatchNorm anyway, rescaling every output channel,
so k values shared across a tensor would come out as up to k × channels different values. Folded
first, the clustered values are the exported ones, and one scale per tensor keeps them k int8
codes. The torch frontend folds the same pairs with the same formula (frontends/torch/fold.py).

A pair is a Conv1D/Conv2D/DepthwiseConv2D without activation whose only consumer is a
BatchNormalization over the last axis; the model is rebuilt from its config without those
BatchNorms (Sequential or functional), the conv given a bias. A ReLU layer right after such a
BatchNorm becomes the conv's activation: the same function, and the form tfmot's QAT quantizes
(it leaves the weights of a conv followed by a separate ReLU layer unquantized, so CQAT/PQAT
would not preserve them; ReLU6 stays a layer, as tfmot cannot quantize a relu6 activation, and
qat.py holds those clusters itself).
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from condition.frontends.tf import keras_modules


def _foldable(conv: Any, bn: Any) -> bool:
    _, keras, _ = keras_modules()
    L = keras.layers
    conv_types = (L.Conv1D, L.Conv2D, L.DepthwiseConv2D)
    transposed = (L.Conv1DTranspose, L.Conv2DTranspose)
    if not isinstance(bn, L.BatchNormalization) or not isinstance(conv, conv_types) or isinstance(conv, transposed):
        return False
    axis = bn.axis if isinstance(bn.axis, int) else (bn.axis[0] if len(bn.axis) == 1 else None)
    return getattr(conv.activation, "__name__", "") == "linear" and axis in (-1, len(bn.input_shape) - 1)


def _consumers(config: dict[str, Any]) -> dict[str, list[str]]:
    """Layer name -> the layers that take its output (the model's output counts as one)."""
    layers = config["layers"]
    names = [entry["config"]["name"] for entry in layers]
    if "inbound_nodes" not in (layers[0] if layers else {}):  # Sequential: the next layer
        return {a: [b] for a, b in zip(names, names[1:])}
    consumers: dict[str, list[str]] = {name: [] for name in names}
    for entry in layers:
        for node in entry["inbound_nodes"]:
            for inbound in node:
                consumers.setdefault(inbound[0], []).append(entry["name"])
    for output in config["output_layers"]:
        consumers.setdefault(output[0], []).append("<output>")
    return consumers


def _calls(config: dict[str, Any]) -> dict[str, int]:
    """How often each layer is called in the model (a shared layer more than once)."""
    return {entry["config"]["name"]: len(entry.get("inbound_nodes", [[None]])) for entry in config["layers"]}


def _activation(entry: dict[str, Any]) -> str | None:
    """"relu" when the layer is just a ReLU (a ReLU or Activation layer). Not ReLU6: tfmot's QAT
    cannot quantize a layer whose activation is relu6."""
    c = entry["config"]
    if entry["class_name"] == "ReLU" and not c.get("negative_slope") and not c.get("threshold") and c.get("max_value") is None:
        return "relu"
    if entry["class_name"] == "Activation" and c.get("activation") == "relu":
        return "relu"
    return None


def _plan(model: Any, config: dict[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """({removed layer: the conv that takes it in} for each folded BatchNorm and each ReLU merged
    into the conv as its activation, {conv: activation})."""
    consumers, calls = _consumers(config), _calls(config)
    entries = {entry["config"]["name"]: entry for entry in config["layers"]}
    removed: dict[str, str] = {}
    activations: dict[str, str] = {}
    for conv, users in consumers.items():
        if len(users) != 1 or users[0] not in entries or calls.get(conv) != 1 or calls.get(users[0]) != 1:
            continue
        bn = users[0]
        if not _foldable(_get(model, conv), _get(model, bn)):
            continue
        removed[bn] = conv
        after = consumers.get(bn, [])
        # tfmot's QAT leaves a conv followed by a separate ReLU layer without weight quantization
        # (and without cluster/sparsity preservation): a ReLU goes into the conv instead.
        if len(after) == 1 and after[0] in entries and calls.get(after[0]) == 1 and _activation(entries[after[0]]):
            removed[after[0]] = conv
            activations[conv] = _activation(entries[after[0]])
    return removed, activations


def _get(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except ValueError:  # the Sequential's InputLayer entry
        return None


def _folded_weights(conv: Any, bn: Any) -> list[np.ndarray]:
    """[kernel, bias] of the conv with `bn` folded in (float64 arithmetic, stored as float32)."""
    _, keras, _ = keras_modules()
    weights = [w.astype(np.float64) for w in conv.get_weights()]
    kernel, bias = weights[0], (weights[1] if conv.use_bias else 0.0)
    stats = {v.name.split("/")[-1].split(":")[0]: v.numpy().astype(np.float64) for v in bn.weights}
    gamma, beta = stats.get("gamma", 1.0), stats.get("beta", 0.0)
    scale = gamma / np.sqrt(stats["moving_variance"] + bn.epsilon)
    if isinstance(conv, keras.layers.DepthwiseConv2D):  # (kh, kw, channels, multiplier): channel c·m + j
        kernel = kernel * scale.reshape(kernel.shape[-2], kernel.shape[-1])
    else:  # (..., in, out)
        kernel = kernel * scale
    bias = (bias - stats["moving_mean"]) * scale + beta
    return [kernel.astype(np.float32), np.asarray(bias, dtype=np.float32)]


def fold_batchnorm(model: Any) -> tuple[Any, list[str]]:
    """(new model with every conv → BatchNorm pair folded, names of the folded convs); the model
    itself when nothing folds (no BatchNorm, a subclassed model, or pairs the rule above rejects).
    A ReLU layer right after a folded BatchNorm becomes the conv's activation (the same function;
    tfmot quantizes such a conv's weights, not one followed by a separate ReLU layer)."""
    _, keras, _ = keras_modules()
    if not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers):
        return model, []
    try:
        config = model.get_config()
    except NotImplementedError:  # a subclassed model: no config to rebuild from
        return model, []
    removed, activations = _plan(model, config)
    if not removed:
        return model, []
    config = copy.deepcopy(config)
    bn_of = {conv: bn for bn, conv in removed.items() if isinstance(model.get_layer(bn), keras.layers.BatchNormalization)}
    kept = []
    for entry in config["layers"]:
        name = entry["config"]["name"]
        if name in removed:
            continue
        if name in bn_of:
            entry["config"]["use_bias"] = True
            entry["config"]["activation"] = activations.get(name, entry["config"]["activation"])
        for node in entry.get("inbound_nodes", []):
            for inbound in node:
                inbound[0] = removed.get(inbound[0], inbound[0])
        kept.append(entry)
    config["layers"] = kept
    for output in config.get("output_layers", []):
        output[0] = removed.get(output[0], output[0])
    rebuilt = type(model).from_config(config)
    for layer in rebuilt.layers:
        old = model.get_layer(layer.name)
        if layer.name in bn_of:
            layer.set_weights(_folded_weights(old, model.get_layer(bn_of[layer.name])))
        else:
            layer.set_weights(old.get_weights())
    return rebuilt, [name for name in (layer.name for layer in model.layers) if name in bn_of]
