"""The trained float model, cached per (model, data set, epochs, seed, train limit) under
`<out>/torch/.float-cache/<hash>/`, so `condition compare` trains it once for every technique.
Written to a temporary file and renamed: a crashed run never leaves a half-written cache entry."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from condition.backend.metrics import config_hash
from condition.datasets import Dataset
from condition.frontends.torch.models import build_model, model_fingerprint
from condition.frontends.torch.train import train
from condition.models import ModelSpec

CACHE_DIR = ".float-cache"
FILE = "model.pt"


def cache_key(spec: ModelSpec, dataset: str, data: Dataset, epochs: int, seed: int, train_limit: int | None) -> str:
    return config_hash({
        "model": model_fingerprint(spec), "dataset": dataset, "train_images": len(data.x_train),
        "input_shape": list(data.input_shape), "classes": data.num_classes,
        "epochs": epochs, "seed": seed, "train_limit": train_limit, "torch": torch.__version__,
    })


def trained_float_model(
    spec: ModelSpec, dataset: str, data: Dataset, epochs: int, seed: int, train_limit: int | None, out: Path,
    progress: Callable[[float], None] | None = None,
) -> tuple[nn.Module, bool]:
    """(model, came_from_cache). Epochs 0 means the model as built/loaded, never cached."""
    model = build_model(spec, data.input_shape, data.num_classes, seed)
    if epochs == 0:
        return model, False
    path = Path(out) / "torch" / CACHE_DIR / cache_key(spec, dataset, data, epochs, seed, train_limit) / FILE
    if path.is_file():
        try:
            model.load_state_dict(torch.load(path, weights_only=True))
            return model, True
        except Exception:  # stale or damaged entry: retrain and overwrite it
            model = build_model(spec, data.input_shape, data.num_classes, seed)
    train(model, data, epochs, seed, progress=progress)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".model.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return model, False
