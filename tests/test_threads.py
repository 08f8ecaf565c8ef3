"""A Linear/ReLU MLP trains on all the run's cores and gives the bytes one thread gives (MKL's strict
CNR mode, condition/threads.py); anything else trains on one thread. Real torch training of the
zoo's MLP on a Fashion-MNIST-sized random subset."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from condition.datasets import Dataset  # noqa: E402
from condition.frontends.torch import train as tr  # noqa: E402
from condition.frontends.torch.models import SimpleNN, SmallCNN  # noqa: E402


def _data(images: int = 3000) -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (images + 10, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, images + 10)
    return Dataset("random", x[:images], y[:images], x[images:], y[images:])


SET_THREADS = torch.set_num_threads


def _trained(cores: int, monkeypatch) -> tuple[bytes, list[int]]:
    monkeypatch.setenv("CONDITION_RUN_CORES", str(cores))
    used = []
    set_threads = SET_THREADS
    monkeypatch.setattr(torch, "set_num_threads", lambda n: (used.append(n), set_threads(n))[1])
    torch.manual_seed(0)
    model = SimpleNN()
    tr.train(model, _data(), epochs=1, seed=0)
    return b"".join(t.numpy().tobytes() for t in model.state_dict().values()), used


def test_an_mlp_trains_on_two_threads_to_the_bytes_of_one(monkeypatch):
    if not tr.mkl_strict():
        pytest.skip("MKL is not in strict CNR mode here (no AVX2/AVX-512, or MKL loaded before MKL_CBWR was set)")
    torch.set_num_threads(1)
    one, used_one = _trained(1, monkeypatch)
    two, used_two = _trained(2, monkeypatch)
    assert used_one == [] and used_two == [2, 1]  # two threads while training, pinned again after
    assert one == two
    assert torch.get_num_threads() == 1


class Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(784, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.fc(torch.flatten(x, 1)))


def test_only_linear_relu_models_without_hooks_count_as_thread_independent():
    assert tr.thread_independent(SimpleNN())
    assert not tr.thread_independent(SmallCNN())  # convolutions: oneDNN sums depend on the thread count
    assert not tr.thread_independent(Sigmoid())  # a function outside the list
    hooked = SimpleNN()
    hooked.fc1.register_forward_pre_hook(lambda m, args: None)
    assert not tr.thread_independent(hooked)
    assert not tr.thread_independent(torch.fx.symbolic_trace(SimpleNN()))  # graph modules (PT2E, QAT) never


def test_training_with_after_step_hooks_stays_on_the_pinned_threads(monkeypatch):
    monkeypatch.setenv("CONDITION_RUN_CORES", "2")
    torch.set_num_threads(1)
    seen = []
    tr.train(SimpleNN(), dataclasses.replace(_data(256)), epochs=1, seed=0,
             after_step=[lambda step, total: seen.append(torch.get_num_threads())])
    assert seen and set(seen) == {1}
