"""The torch versions of the built-in models, and loading a user's model.

Same names and shapes as condition/models.py describes (and the TF side builds), so
`tf prune` and `torch prune` condition the same network. A user model is a
`package.module:factory` returning an nn.Module, or a saved ExportedProgram (.pt2).
"""
from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from condition.errors import ArtifactError, ModelError, one_line
from condition.initial_weights import INIT_SCHEME, initial_weights
from condition.models import BN_EPSILON, BN_MOMENTUM_TORCH, BUILTIN_MODELS, CONVNETS, ModelSpec, convnet_spec


class SimpleNN(nn.Module):
    """The seed notebook's Simple_NN: flatten → 512 → 256 → classes, ReLU."""

    def __init__(self, in_features: int = 28 * 28, classes: int = 10) -> None:
        super().__init__()
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(in_features, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(x)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class SmallCNN(nn.Module):
    """conv3x3(16)·pool → conv3x3(32)·pool → dense 64 → classes ('same' padding, ReLU)."""

    def __init__(self, channels: int = 1, height: int = 28, width: int = 28, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(32 * (height // 4) * (width // 4), 64)
        self.fc2 = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(self.flatten(x)))
        return self.fc2(x)


class ConvNet(nn.Module):
    """`ds-cnn` / `mobilenet-v2` from condition/models.py: every conv (no bias) → BatchNorm →
    ReLU/ReLU6, blocks with an Add where the spec says, global average pooling, dense `fc`.

    Modules are attributes named as the Keras layers (`stem`, `block1_dw`, `block1_dw_bn`, `fc`),
    so per-layer figures of both frontends line up. padding=k//2 equals Keras' explicit
    ZeroPadding2D before a strided conv and its 'same' for stride 1.
    """

    def __init__(self, name: str, dataset_shape: tuple[int, ...], classes: int) -> None:
        super().__init__()
        self.spec = convnet_spec(name, dataset_shape, classes)
        c = self.spec.channels
        for conv in self.spec.convs():
            groups = c if conv.kind == "depthwise" else 1
            out = c if conv.kind == "depthwise" else conv.filters
            self.add_module(conv.name, nn.Conv2d(c, out, conv.kernel, conv.stride, conv.kernel // 2, groups=groups, bias=False))
            self.add_module(f"{conv.name}_bn", nn.BatchNorm2d(out, eps=BN_EPSILON, momentum=BN_MOMENTUM_TORCH))
            c = out
        self.fc = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.spec.blocks:
            block_input = x
            for conv in block.convs:
                x = getattr(self, f"{conv.name}_bn")(getattr(self, conv.name)(x))
                if conv.activation == "relu":
                    x = F.relu(x)
                elif conv.activation == "relu6":
                    x = torch.clamp(x, 0.0, 6.0)  # ReLU6 as clamp: F.relu6 (hardtanh) stays on the CPU after PT2E
            if block.residual:
                x = x + block_input
        # avg_pool2d over the whole map, not x.mean() (the Arm quantizer rewrites mean with fixed
        # shapes); stride 1 (one output either way) because U55 takes pooling strides up to 3 only
        return self.fc(torch.flatten(F.avg_pool2d(x, x.shape[2:], stride=1), 1))


def input_shape_nchw(dataset_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) for a data set whose images are (H, W) or (H, W, C)."""
    if len(dataset_shape) == 2:
        return (1, *dataset_shape)
    h, w, c = dataset_shape
    return (c, h, w)


def _shared_init(model: nn.Module, name: str, dataset_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    """Load the initial weights both frontends share (condition/initial_weights.py), in torch's layouts."""
    inits = initial_weights(name, dataset_shape, classes, seed)
    if inits[0].name:  # BatchNorm CNNs: by layer name
        layers = [model.get_submodule(init.name) for init in inits]
    else:
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    with torch.no_grad():
        for layer, init in zip(layers, inits, strict=True):
            if init.kind == "batchnorm":
                for tensor, value in zip((layer.weight, layer.bias, layer.running_mean, layer.running_var), init.batchnorm()):
                    tensor.copy_(torch.from_numpy(value))
                continue
            kernel = torch.from_numpy(init.kernel)
            # Keras (in, out) → torch (out, in); Keras (kh, kw, cin, cout) → torch (cout, cin, kh, kw);
            # Keras depthwise (kh, kw, c, 1) → torch (c, 1, kh, kw)
            layer.weight.copy_(kernel.T if init.kind == "dense" else kernel.permute(2, 3, 0, 1) if init.kind == "depthwise"
                               else kernel.permute(3, 2, 0, 1))
            if init.bias is not None:
                layer.bias.copy_(torch.from_numpy(init.bias))
    return model


def build_model(spec: ModelSpec, dataset_shape: tuple[int, ...], classes: int, seed: int) -> nn.Module:
    """A fresh (untrained unless the user's) model for this data set's image shape."""
    c, h, w = input_shape_nchw(dataset_shape)
    torch.manual_seed(seed)
    if spec.kind == "builtin":
        if spec.value == "mlp":
            return _shared_init(SimpleNN(c * h * w, classes), "mlp", dataset_shape, classes, seed)
        if spec.value == "cnn":
            return _shared_init(SmallCNN(c, h, w, classes), "cnn", dataset_shape, classes, seed)
        if spec.value in CONVNETS:
            return _shared_init(ConvNet(spec.value, dataset_shape, classes), spec.value, dataset_shape, classes, seed)
        raise ModelError(spec.value, "unknown built-in model (choose " + ", ".join(BUILTIN_MODELS) + ")")
    if spec.kind == "factory":
        model = _from_factory(spec.value)
    else:
        model = load_pt2(spec.value)
    _check_runs(model, spec.value, (1, c, h, w), classes)
    return model


def _from_factory(value: str) -> nn.Module:
    module_name, _, attr = value.rpartition(":")
    if not module_name or not attr:
        raise ModelError(value, "expected package.module:factory")
    if os.getcwd() not in sys.path:  # like `python -m`: the user's package in the current folder
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or whatever the user's module raises at import
        raise ModelError(value, f"cannot import {module_name} ({type(exc).__name__}: {exc})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ModelError(value, f"{module_name} has no callable {attr}")
    try:
        model = factory()
    except Exception as exc:
        raise ModelError(value, f"{attr}() raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, nn.Module):
        raise ModelError(value, f"{attr}() returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_pt2(path: str | Path) -> nn.Module:
    """A saved ExportedProgram (torch.export.save) as a trainable module."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(str(path), "file not found (give a built-in name, package.module:factory, or a .pt2)")
    if path.suffix != ".pt2":
        raise ArtifactError(str(path), "the torch frontend reads .pt2 ExportedPrograms (torch.export.save) or package.module:factory")
    try:
        exported = torch.export.load(str(path))
    except Exception as exc:  # zipfile / unpickling / schema errors
        raise ArtifactError(str(path), f"not a readable ExportedProgram ({type(exc).__name__})") from None
    if not _batch_is_dynamic(exported):
        raise ArtifactError(str(path), "was exported with a fixed batch size; training, calibration and evaluation run "
                            "in batches (re-export with dynamic_shapes=({0: torch.export.Dim('batch')},))")
    return exported.module(check_guards=False)


def _batch_is_dynamic(exported: torch.export.ExportedProgram) -> bool:
    """True when the first user input's leading dimension is symbolic (the module accepts any batch)."""
    user_inputs = set(exported.graph_signature.user_inputs)
    for node in exported.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            return value is not None and value.ndim > 0 and not isinstance(value.shape[0], int)
    return False


def set_train_mode(model: nn.Module, mode: bool) -> None:
    """model.train()/eval(); exported GraphModules (.pt2, PT2E) refuse it and get torchao's
    graph rewrite instead (dropout/batch-norm switched in the graph). A graph with neither op has
    nothing to rewrite: it only gets torchao's mode flag, because the rewrite exports its patterns
    each time it meets a new graph (0.6 s a call, several calls a run)."""
    try:
        model.train(mode)
    except NotImplementedError:
        from torchao.quantization.pt2e import export_utils, move_exported_model_to_eval, move_exported_model_to_train

        if not _has_mode_dependent_ops(model):
            setattr(model, export_utils._EXPORTED_TRAINING_ATTR, mode)
            return
        from condition.frontends.torch import pattern_cache

        pattern_cache.install()
        (move_exported_model_to_train if mode else move_exported_model_to_eval)(model)


def _has_mode_dependent_ops(model: nn.Module) -> bool:
    """Does any graph of `model` hold a dropout or batch-norm op (what torchao's rewrite switches)?"""
    return any("dropout" in str(node.target) or "batch_norm" in str(node.target)
               for m in model.modules() if isinstance(m, torch.fx.GraphModule) for node in m.graph.nodes)


def _check_runs(model: nn.Module, name: str, shape: tuple[int, ...], classes: int) -> None:
    """Fail early, with the shapes, when a user model does not fit the data set."""
    set_train_mode(model, False)
    try:
        with torch.no_grad():
            out = model(torch.zeros(shape))
    except Exception as exc:
        raise ModelError(name, f"does not run on input of shape {list(shape)} ({type(exc).__name__}: {one_line(exc)})") from None
    if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != classes:
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(name, f"returns {got} for a batch of 1, expected [1, {classes}] class scores")


def model_fingerprint(spec: ModelSpec) -> str:
    """What identifies a model's starting point for the float cache (file content for .pt2)."""
    if spec.kind == "file" and Path(spec.value).is_file():
        return "pt2:" + hashlib.sha256(Path(spec.value).read_bytes()).hexdigest()[:16]
    if spec.kind == "builtin":
        return f"builtin:{spec.value}@{INIT_SCHEME}"
    return f"{spec.kind}:{spec.value}"
