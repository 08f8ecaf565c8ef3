"""The float cache keeps each epoch of a training: the model after epoch e of an E-epoch training is
the e-epoch model, to the bit, on both frontends (a BatchNorm CNN too), so a later run for e epochs
(e.g. a search's same-epochs baselines) loads it instead of training again."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from condition.datasets import load_dataset
from condition.run import RunConfig, load_frontend, no_progress
from condition.threads import COMPUTE_THREADS, pin_thread_env

from conftest import needs_fashion_mnist  # noqa: E402

pytestmark = needs_fashion_mnist


def float_model(frontend: str, model: str, epochs: int, out: Path):
    pin_thread_env()
    fe = load_frontend(frontend)
    fe.pin_threads(COMPUTE_THREADS)
    config = RunConfig(frontend=frontend, chain=(), model=model, epochs=epochs, out=out, train_limit=256, eval_limit=64)
    data = load_dataset(config.dataset).subset(config.train_limit, config.eval_limit)
    return fe.float_model(config, data, no_progress)


def weights(frontend: str, model) -> list[np.ndarray]:
    if frontend == "tf":
        return [np.asarray(w) for w in model.get_weights()]
    return [t.detach().numpy().copy() for t in model.state_dict().values()]


def without_snapshots(frontend: str, monkeypatch) -> None:
    if frontend == "tf":
        from condition.frontends.tf import keras_modules, train

        monkeypatch.setattr(train, "epoch_snapshots", lambda *args: keras_modules()[1].callbacks.Callback())
    else:
        from condition.frontends.torch import float_cache

        monkeypatch.setattr(float_cache, "snapshot", lambda *args: None)
        monkeypatch.setattr(float_cache, "store", lambda *args: None)


@pytest.mark.parametrize("model", ["mlp", "ds-cnn"])
@pytest.mark.parametrize("frontend", ["tf", "torch"])
def test_each_epoch_of_a_training_is_cached_as_that_many_epochs(frontend, model, tmp_path, monkeypatch):
    long = float_model(frontend, model, 3, tmp_path / "long")
    assert not long.cached
    identities = (tmp_path / "long").glob(f"{frontend}/.float-cache/*/identity.json")
    assert sorted(json.loads(p.read_text())["epochs"] for p in identities) == [1, 2, 3]
    snap = float_model(frontend, model, 2, tmp_path / "long")  # epoch 2 of the 3-epoch training
    assert snap.cached
    with monkeypatch.context() as m:
        without_snapshots(frontend, m)
        plain = float_model(frontend, model, 2, tmp_path / "plain")  # trained for 2 epochs, nothing else
    assert not plain.cached and len(list((tmp_path / "plain").glob(f"{frontend}/.float-cache/*/identity.json"))) == 1
    for a, b in zip(weights(frontend, plain.model), weights(frontend, snap.model), strict=True):
        assert a.tobytes() == b.tobytes()
