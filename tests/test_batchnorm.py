"""BatchNorm is treated the same way on both frontends: after every training step the running
statistics are re-estimated (mean of the per-batch statistics over the same training images, in
training mode, no weight updates), so inference-mode accuracy is what training reached, even
with Keras' default momentum 0.99 that barely moves in a short run."""
from __future__ import annotations

import numpy as np
import pytest

from condition.datasets import FASHION_MNIST_DIR, Dataset, load_dataset

needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST not installed")


def _random_dataset(n: int = 300) -> Dataset:
    rng = np.random.default_rng(0)
    x = (rng.random((n, 8, 8, 3)) * 255).astype(np.uint8)
    y = rng.integers(0, 2, n)
    return Dataset("random", x, y, x[:50], y[:50])


def _expected_statistics(inputs: np.ndarray, batches: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean over batches of each batch's per-channel mean and unbiased variance (NHWC)."""
    parts = np.array_split(inputs, batches)
    means = [p.mean(axis=(0, 1, 2)) for p in parts]
    variances = [p.reshape(-1, p.shape[-1]).var(axis=0, ddof=1) for p in parts]
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def _exported(torch, module, example):
    """An exported GraphModule taking any batch (as a user's .pt2 must)."""
    batch = torch.export.Dim("batch", min=1, max=4096)
    return torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},), strict=False).module()


def test_tf_recalibration_averages_batch_statistics() -> None:
    from condition.frontends.tf import keras_modules
    from condition.frontends.tf.train import BATCH_SIZE, TrainData, recalibrate_batchnorm

    _, keras, _ = keras_modules()
    ds = _random_dataset()
    x = ds.x_train.astype(np.float32) / 255.0
    model = keras.Sequential([keras.layers.InputLayer((8, 8, 3)), keras.layers.BatchNormalization(name="bn")])
    data = TrainData(x, ds.y_train, x[:50], ds.y_test, seed=1)
    assert recalibrate_batchnorm(model, data) == len(x)
    mean, var = _expected_statistics(data.calibration(len(x)), max(len(x) // BATCH_SIZE, 1))
    bn = model.get_layer("bn")
    assert np.allclose(bn.moving_mean.numpy(), mean, atol=1e-5) and np.allclose(bn.moving_variance.numpy(), var, atol=1e-5)
    assert bn.momentum == 0.99  # restored


def test_torch_recalibration_averages_batch_statistics_on_modules_and_exported_graphs() -> None:
    torch = pytest.importorskip("torch")
    from condition.frontends.torch.models import set_train_mode
    from condition.frontends.torch.train import BATCH_SIZE, batchnorm_statistics, recalibrate_batchnorm, to_tensor

    ds = _random_dataset()
    idx = np.sort(np.random.default_rng(1).choice(len(ds.x_train), size=len(ds.x_train), replace=False))
    mean, var = _expected_statistics(ds.x_train[idx].astype(np.float32) / 255.0, max(len(ds.x_train) // BATCH_SIZE, 1))
    module = torch.nn.Sequential(torch.nn.BatchNorm2d(3, momentum=0.01))
    graph = _exported(torch, module, to_tensor(ds.x_train[:2], ds.input_shape))
    set_train_mode(graph, True)  # the batch_norm op in training form, as QAT and .pt2 models train
    for model in (module, graph):
        (running_mean, running_var, _), = batchnorm_statistics(model)
        assert recalibrate_batchnorm(model, ds, seed=1) == len(ds.x_train)
        assert np.allclose(running_mean.numpy(), mean, atol=1e-5) and np.allclose(running_var.numpy(), var, atol=1e-5)
    assert int(module[0].num_batches_tracked) == 0  # every other buffer restored


def test_torch_recalibration_leaves_qat_observers_and_weights_alone() -> None:
    torch = pytest.importorskip("torch")
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    from condition.backend.target import Target
    from condition.frontends.torch.export import quantizer_for
    from condition.frontends.torch.train import batchnorm_statistics, recalibrate_batchnorm, to_tensor

    ds = _random_dataset()
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
    graph = _exported(torch, module, to_tensor(ds.x_train[:2], ds.input_shape))
    prepared = prepare_qat_pt2e(graph, quantizer_for(Target(), qat=True))
    prepared(to_tensor(ds.x_train[:64], ds.input_shape))  # observers sized and set
    norms = batchnorm_statistics(prepared)
    assert len(norms) == 1  # the conv-BN QAT pattern keeps BatchNorm as a batch_norm op
    stats = {id(t) for t in norms[0][:2]}
    before = {k: v.detach().clone() for k, v in prepared.state_dict(keep_vars=True).items()}
    recalibrate_batchnorm(prepared, ds, seed=0)
    after = prepared.state_dict(keep_vars=True)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and {id(after[k]) for k in changed} <= stats


@pytest.mark.parametrize("frontend", ["tf", "torch"])
def test_no_training_no_recalibration(frontend: str) -> None:
    """A user's trained model with --epochs 0 keeps its statistics."""
    ds = _random_dataset()
    if frontend == "tf":
        from condition.frontends.tf import keras_modules
        from condition.frontends.tf.train import TrainData, fit

        _, keras, _ = keras_modules()
        model = keras.Sequential([keras.layers.InputLayer((8, 8, 3)), keras.layers.BatchNormalization(), keras.layers.Flatten(),
                                  keras.layers.Dense(2)])
        before = [w.copy() for w in model.get_weights()]
        x = ds.x_train.astype(np.float32) / 255.0
        assert fit(model, TrainData(x, ds.y_train, x, ds.y_train), 0, "train float") == 0
        assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
        from condition.frontends.tf.train import batchnorm_note
    else:
        torch = pytest.importorskip("torch")
        from condition.frontends.torch.train import train

        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(), torch.nn.Linear(144, 2))
        before = {k: v.clone() for k, v in model.state_dict().items()}
        train(model, ds, 0, seed=0)
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        from condition.frontends.torch.train import batchnorm_note
    assert batchnorm_note(model, trained=False, train_images=300) is None
    assert "300 training images" in batchnorm_note(model, trained=True, train_images=300)


# ---- the trap itself, on real images: a short run with a slow BatchNorm momentum -------------

def _fashion(n_train: int = 3000, n_test: int = 500) -> Dataset:
    return load_dataset("fashion-mnist").subset(n_train, n_test)


@needs_fashion_mnist
def test_tf_short_training_reaches_inference_mode(monkeypatch) -> None:
    """A user-style Keras BN CNN (default momentum 0.99), 16 steps: stale moving statistics give
    near-chance inference accuracy; after the re-estimation it matches training mode."""
    from condition.frontends.tf import keras_modules, train

    _, keras, _ = keras_modules()
    ds = _fashion()
    data = train.TrainData(train.shaped(ds.normalised("train"), (28, 28, 1)), ds.y_train,
                           train.shaped(ds.normalised("test"), (28, 28, 1)), ds.y_test, seed=0)
    L = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential([L.InputLayer((28, 28, 1)), L.Conv2D(16, 3, 2, use_bias=False), L.BatchNormalization(), L.ReLU(),
                              L.Conv2D(32, 3, 2, use_bias=False), L.BatchNormalization(), L.ReLU(),
                              L.GlobalAveragePooling2D(), L.Dense(10)])
    with monkeypatch.context() as m:
        m.setattr(train, "recalibrate_batchnorm", lambda model, data: 0)
        train.fit(model, data, 1, "train float")
    training_mode = float(np.mean(np.argmax(model(data.x_test, training=True).numpy(), -1) == data.y_test))
    stale = train.float_accuracy(model, data)
    images = train.recalibrate_batchnorm(model, data)
    fixed = train.float_accuracy(model, data)
    assert images == min(len(data.x_train), train.BN_RECALIBRATION_IMAGES)
    assert training_mode > 0.3 and stale < training_mode - 0.15  # 10 classes: chance is 0.1
    assert abs(fixed - training_mode) < 0.05


@needs_fashion_mnist
def test_torch_short_training_reaches_inference_mode(monkeypatch) -> None:
    """The same with torch and momentum 0.01 (Keras' 0.99): the same trap, the same fix."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from condition.frontends.torch import train

    ds = _fashion()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, 2, bias=False), nn.BatchNorm2d(16, momentum=0.01), nn.ReLU(),
                          nn.Conv2d(16, 32, 3, 2, bias=False), nn.BatchNorm2d(32, momentum=0.01), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    with monkeypatch.context() as m:
        m.setattr(train, "recalibrate_batchnorm", lambda model, data, seed: 0)
        train.train(model, ds, 1, seed=0)
    x, y = train.test_tensors(ds)
    model.train()
    with torch.no_grad():
        training_mode = float((model(x).argmax(1) == y).float().mean())
    stale = train.accuracy(model, ds)
    images = train.recalibrate_batchnorm(model, ds, seed=0)
    fixed = train.accuracy(model, ds)
    assert images == min(len(ds.x_train), train.BN_RECALIBRATION_IMAGES)
    assert training_mode > 0.3 and stale < training_mode - 0.15  # 10 classes: chance is 0.1
    assert abs(fixed - training_mode) < 0.05
