"""The torch side of the shared float model cache (condition/float_cache.py): the trained float
model's state_dict under `<out>/torch/.float-cache/<hash>/`, so `condition compare` trains it once
per (model, data set, epochs, seed, train limit) for every technique."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from condition.datasets import Dataset
from condition.float_cache import cached, store
from condition.frontends.torch.models import build_model, model_fingerprint
from condition.frontends.torch.train import snapshot, train
from condition.models import ModelSpec

CACHE_DIR = ".float-cache"
FILE = "model.pt"


def identity(spec: ModelSpec, dataset: str | dict[str, Any], data: Dataset, epochs: int, seed: int,
             train_limit: int | None) -> dict[str, Any]:
    """Everything the trained weights depend on; `dataset` is `condition.datasets.dataset_identity` (a user's
    file by path, size and mtime)."""
    return {
        "model": model_fingerprint(spec), "dataset": dataset,
        "train_images": len(data.x_train), "input_shape": list(data.input_shape), "classes": data.num_classes,
        "epochs": epochs, "seed": seed, "train_limit": train_limit, "torch": torch.__version__,
    }


def trained_float_model(
    spec: ModelSpec, dataset: str | dict[str, Any], data: Dataset, epochs: int, seed: int, train_limit: int | None, out: Path,
    progress: Callable[[float], None] | None = None,
) -> tuple[nn.Module, bool]:
    """(model, came_from_cache). Epochs 0 means the model as built/loaded, never cached."""
    model = build_model(spec, data.input_shape, data.num_classes, seed)  # a user model's errors surface before the cache
    if epochs == 0:
        return model, False

    def save(trained: nn.Module, folder: Path) -> None:
        torch.save(trained.state_dict(), folder / FILE)

    def load(folder: Path) -> nn.Module:
        loaded = copy.deepcopy(model)  # `model` stays untouched for training if this entry is damaged
        loaded.load_state_dict(torch.load(folder / FILE, weights_only=True))
        return loaded

    root = Path(out) / "torch" / CACHE_DIR

    def after_epoch(done: int) -> None:  # each epoch's model is cached too (train.snapshot)
        store(root, identity(spec, dataset, data, done, seed, train_limit), lambda: snapshot(model, data, seed), save)

    return cached(root, identity(spec, dataset, data, epochs, seed, train_limit),
                  lambda: train(model, data, epochs, seed, progress=progress, after_epoch=after_epoch), save, load)
