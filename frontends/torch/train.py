"""Training and evaluation loops shared by the float model and every fine-tuning step.

Fine-tuning takes `after_step` hooks: the constraints of earlier techniques (pruning masks,
shared cluster values) are re-applied after every optimizer step, which works the same on a
plain nn.Module and on a GraphModule from torch.export / prepare_qat_pt2e.
"""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from condition.datasets import Dataset
from condition.frontends.torch.models import input_shape_nchw, set_train_mode as _set_train

LR = 1e-3  # the seed notebook's Adam settings
BATCH_SIZE = 128
StepHook = Callable[[int, int], None]  # (step, total steps)


def to_tensor(images: np.ndarray, dataset_shape: tuple[int, ...]) -> torch.Tensor:
    """uint8/float images (N, H, W[, C]) in [0, 1] → float NCHW tensor (the seed's ToTensor)."""
    x = images.astype(np.float32) / 255.0 if images.dtype == np.uint8 else images.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None, :, :]
    else:
        x = np.transpose(x, (0, 3, 1, 2))
    c, h, w = input_shape_nchw(dataset_shape)
    return torch.from_numpy(np.ascontiguousarray(x)).reshape(-1, c, h, w)


def train_tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor(data.x_train, data.input_shape), torch.from_numpy(data.y_train)


def test_tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return to_tensor(data.x_test, data.input_shape), torch.from_numpy(data.y_test)


def steps_per_epoch(data: Dataset) -> int:
    return (len(data.x_train) + BATCH_SIZE - 1) // BATCH_SIZE


def train(
    model: nn.Module,
    data: Dataset,
    epochs: int,
    seed: int,
    after_step: Iterable[StepHook] = (),
    progress: Callable[[float], None] | None = None,
) -> nn.Module:
    """Adam, cross-entropy, shuffled mini-batches; trains `model` in place and returns it."""
    if epochs <= 0:
        return model
    hooks = list(after_step)
    x, y = train_tensors(data)
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    total = epochs * steps_per_epoch(data)
    step = 0
    _set_train(model, True)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=generator)
        for start in range(0, len(x), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            step += 1
            with torch.no_grad():
                for hook in hooks:
                    hook(step, total)
            if progress is not None and step % 20 == 0:
                progress(step / total)
    _set_train(model, False)
    return model


def predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> np.ndarray:
    """Class indices for every image, evaluated in batches without gradients."""
    _set_train(model, False)
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            out.append(model(x[start:start + batch]).argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def accuracy(model: nn.Module, data: Dataset) -> float:
    x, y = test_tensors(data)
    return float((predict(model, x) == y.numpy()).mean())
