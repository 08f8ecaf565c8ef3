"""The built-in Keras networks (same names and shapes as the torch side) and user model files."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from condition.errors import ModelError, one_line
from condition.initial_weights import initial_weights
from condition.frontends.tf import keras_modules
from condition.models import BN_EPSILON, BN_MOMENTUM_TORCH, BUILTIN_MODELS, CONVNETS, ModelSpec, convnet_spec

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def build_builtin(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int) -> Any:
    """A fresh, untrained built-in model; `seed` fixes the initial weights."""
    _, keras, _ = keras_modules()
    # Layer names come from per-process counters (dense, dense_1, ...): a Ray worker that built models for
    # earlier cells would name this one dense_4, and the names are in the .tflite and the record. Reset them.
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    L = keras.layers
    if name in CONVNETS:
        return _convnet(name, input_shape, num_classes, seed)
    if name == "mlp":  # the seed notebook's 784-512-256-10
        layers = [L.Flatten(), L.Dense(512, activation="relu"), L.Dense(256, activation="relu"), L.Dense(num_classes)]
    elif name == "cnn":
        chan = input_shape if len(input_shape) == 3 else (*input_shape, 1)
        layers = [
            L.Reshape(chan),
            L.Conv2D(16, 3, padding="same", activation="relu"), L.MaxPooling2D(),
            L.Conv2D(32, 3, padding="same", activation="relu"), L.MaxPooling2D(),
            L.Flatten(), L.Dense(64, activation="relu"), L.Dense(num_classes),
        ]
    else:
        raise ModelError(name, "not a built-in model (choose " + ", ".join(BUILTIN_MODELS) + ", or give a Keras file)")
    model = keras.Sequential([L.InputLayer(input_shape), *layers], name=name)
    weighted = [layer for layer in model.layers if isinstance(layer, (L.Dense, L.Conv2D))]
    for layer, init in zip(weighted, initial_weights(name, input_shape, num_classes, seed), strict=True):
        layer.set_weights([init.kernel, init.bias])  # the same start as the torch side (condition/initial_weights.py)
    return model


def _convnet(name: str, input_shape: tuple[int, ...], num_classes: int, seed: int) -> Any:
    """`ds-cnn` / `mobilenet-v2` from condition/models.py, layer names as on the torch side.

    It takes (H, W, C) images, (H, W, 1) for a data set of (H, W) ones (`train.shaped` feeds them so).
    A strided 3x3 conv gets an explicit ZeroPadding2D (1 on every side) and 'valid' padding:
    Keras' 'same' would pad only bottom/right, torch's padding=1 pads both sides; this way both
    compute the same function (Vela folds the PAD into the conv).
    """
    _, keras, _ = keras_modules()
    L = keras.layers
    spec = convnet_spec(name, input_shape, num_classes)
    # (H, W) images come in as (H, W, 1), as torch's come in as (1, H, W): a Reshape of the graph's input is a copy on
    # the NPU (Vela cannot alias a subgraph input), 944 of ds-cnn's 40,688 NPU cycles on U55-128.
    x = inputs = L.Input((*input_shape[:2], spec.channels), name="input")
    for block in spec.blocks:
        block_input = x
        for conv in block.convs:
            padding = "same"
            if conv.stride > 1 and conv.kernel > 1:
                x = L.ZeroPadding2D(conv.kernel // 2, name=f"{conv.name}_pad")(x)
                padding = "valid"
            if conv.kind == "depthwise":
                x = L.DepthwiseConv2D(conv.kernel, conv.stride, padding, use_bias=False, name=conv.name)(x)
            else:
                x = L.Conv2D(conv.filters, conv.kernel, conv.stride, padding, use_bias=False, name=conv.name)(x)
            # momentum 0.9 = torch's 0.1 (Keras' 0.99 leaves inference-mode statistics stale after short training)
            x = L.BatchNormalization(momentum=1.0 - BN_MOMENTUM_TORCH, epsilon=BN_EPSILON, name=f"{conv.name}_bn")(x)
            if conv.activation is not None:
                x = L.ReLU(6.0 if conv.activation == "relu6" else None, name=f"{conv.name}_{conv.activation}")(x)
        if block.residual:
            x = L.Add(name=f"{block.name}_add")([block_input, x])
    # Average pooling over the whole feature map, the same op (AVG_POOL, stride 1) as torch's avg_pool2d
    x = L.Flatten(name="flatten")(L.AveragePooling2D(tuple(x.shape[1:3]), strides=1, name="pool")(x))
    outputs = L.Dense(num_classes, name="fc")(x)
    model = keras.Model(inputs, outputs, name=name)
    for init in initial_weights(name, input_shape, num_classes, seed):  # the torch side's start (condition/initial_weights.py)
        layer = model.get_layer(init.name)
        layer.set_weights(list(init.batchnorm()) if init.kind == "batchnorm"
                          else [init.kernel] + ([init.bias] if init.bias is not None else []))
    return model


def load_file(path: str | Path) -> Any:
    """A user's Keras model (.keras, .h5, or a SavedModel folder written by tf_keras)."""
    _, keras, _ = keras_modules()
    path = Path(path)
    if not path.exists():
        raise ModelError(str(path), "file not found (give " + ", ".join(BUILTIN_MODELS) + ", or a Keras .keras/.h5/SavedModel path)")
    if path.is_file() and path.suffix.lower() not in KERAS_SUFFIXES:
        raise ModelError(str(path),
                         f"unsupported model file type {path.suffix!r} (the tf frontend reads .keras, .h5, or a SavedModel folder)")
    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # h5py/zip/protobuf errors on a corrupt or foreign file
        raise ModelError(str(path), f"cannot load as a Keras model ({type(exc).__name__}: {one_line(exc)})") from None
    if not isinstance(model, keras.Model):
        raise ModelError(str(path), "not a Keras model (a SavedModel must be written by tf_keras, not tf.saved_model.save)")
    return model


def load_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, seed: int) -> Any:
    if spec.kind == "builtin":
        return build_builtin(spec.value, input_shape, num_classes, seed)
    if spec.kind == "factory":
        raise ModelError(spec.value, "module:function models are a torch feature; give a Keras file to the tf frontend")
    return load_file(spec.value)


def check_compatible(model: Any, input_shape: tuple[int, ...], num_classes: int, where: str) -> None:
    """A user model must take the data set's images and give one logit per class."""
    got_in = tuple(model.input_shape[1:])
    squeeze = lambda s: tuple(d for d in s if d != 1)  # noqa: E731  (28,28) and (28,28,1) are the same images
    if squeeze(got_in) != squeeze(input_shape):
        raise ModelError(where, f"takes inputs of shape {got_in}, the data set has images of shape {input_shape}")
    got_out = model.output_shape[-1]
    if got_out != num_classes:
        raise ModelError(where, f"has {got_out} outputs, the data set has {num_classes} classes")


def clone(model: Any) -> Any:
    """A fresh copy with the same weights: every tfmot verb gets its own clone
    (`cluster_weights` leaves the model it was given unusable for `prune_low_magnitude` and `quantize_model`)."""
    _, keras, _ = keras_modules()
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy
