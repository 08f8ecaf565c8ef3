"""Both frontends start the built-in models from the same weights (condition/initial_weights.py), so a
tf/torch difference in the report is the pipelines', not the initialisers'."""
from __future__ import annotations

import numpy as np
import pytest

from condition.initial_weights import initial_weights
from condition.models import parse_model_spec


def test_initial_weights_are_seeded_glorot_uniform() -> None:
    a = initial_weights("mlp", (28, 28), 10, seed=0)
    b = initial_weights("mlp", (28, 28), 10, seed=0)
    c = initial_weights("mlp", (28, 28), 10, seed=1)
    assert [l.kernel.shape for l in a] == [(784, 512), (512, 256), (256, 10)]
    assert all(np.array_equal(x.kernel, y.kernel) for x, y in zip(a, b))
    assert not np.array_equal(a[0].kernel, c[0].kernel)
    limit = np.sqrt(6 / (784 + 512))
    assert np.abs(a[0].kernel).max() <= limit and np.abs(a[0].kernel).max() > 0.9 * limit
    assert all(not l.bias.any() for l in a)


def test_tf_and_torch_mlp_compute_the_same_function_before_training() -> None:
    torch = pytest.importorskip("torch")
    from condition.frontends.tf.models import build_builtin
    from condition.frontends.torch.models import build_model

    x = np.random.default_rng(7).random((8, 28, 28), dtype=np.float32)
    torch_out = build_model(parse_model_spec("mlp"), (28, 28), 10, seed=3)(torch.from_numpy(x)).detach().numpy()
    tf_out = build_builtin("mlp", (28, 28), 10, seed=3)(x).numpy()
    assert np.abs(torch_out - tf_out).max() < 1e-4
    other_seed = build_builtin("mlp", (28, 28), 10, seed=4)(x).numpy()
    assert np.abs(other_seed - tf_out).max() > 1e-2


def test_tf_and_torch_cnn_hold_the_same_kernels() -> None:
    pytest.importorskip("torch")
    from condition.frontends.tf.models import build_builtin
    from condition.frontends.torch.models import build_model

    torch_model = build_model(parse_model_spec("cnn"), (28, 28), 10, seed=0)
    tf_model = build_builtin("cnn", (28, 28), 10, seed=0)
    tf_conv1 = next(l for l in tf_model.layers if "conv" in l.name).get_weights()[0]  # (kh, kw, cin, cout)
    torch_conv1 = torch_model.conv1.weight.detach().numpy()  # (cout, cin, kh, kw)
    assert np.array_equal(torch_conv1, tf_conv1.transpose(3, 2, 0, 1))


def test_mlp_and_cnn_initial_weights_are_pinned() -> None:
    """The BatchNorm CNNs were added without changing these: the default compare table stays as it was."""
    mlp = initial_weights("mlp", (28, 28), 10, seed=0)
    cnn = initial_weights("cnn", (28, 28), 10, seed=0)
    assert np.allclose(mlp[0].kernel[0, :3], [0.0186381246894598, -0.03132805973291397, -0.062465593218803406])
    assert np.isclose(float(mlp[2].kernel.sum()), -1.0318987369537354, atol=1e-5)
    assert np.allclose(cnn[0].kernel[0, 0, 0, :3], [0.054244909435510635, -0.0911780446767807, -0.18180157244205475])
    assert np.isclose(float(cnn[2].kernel.sum()), -5.962553977966309, atol=1e-4)


@pytest.mark.parametrize("name", ["ds-cnn", "mobilenet-v2"])
def test_batchnorm_cnn_initial_weights(name: str) -> None:
    layers = initial_weights(name, (32, 32, 3), 10, seed=0)
    again = initial_weights(name, (32, 32, 3), 10, seed=0)
    assert [l.name for l in layers] == [l.name for l in again] and len({l.name for l in layers}) == len(layers)
    assert all(np.array_equal(a.kernel, b.kernel) for a, b in zip(layers, again) if a.kernel is not None)
    assert layers[0].name == "stem" and layers[0].kernel.shape[:3] == (3, 3, 3) and layers[-1].name == "fc"
    kinds = {l.kind for l in layers}
    assert kinds == {"conv", "depthwise", "batchnorm", "dense"}
    for conv, bn in zip(layers[:-1:2], layers[1:-1:2]):  # every conv (no bias) is followed by its BatchNorm
        assert conv.bias is None and bn.kind == "batchnorm" and bn.name == f"{conv.name}_bn"
        assert bn.channels == conv.kernel.shape[-1 if conv.kind == "conv" else -2]
    gamma, beta, mean, var = layers[1].batchnorm()
    assert (gamma == 1).all() and not beta.any() and not mean.any() and (var == 1).all()


def _torch_input(torch, x: np.ndarray):
    return torch.from_numpy(x[:, None] if x.ndim == 3 else np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


@pytest.mark.parametrize("name", ["ds-cnn", "mobilenet-v2"])
@pytest.mark.parametrize("shape", [(28, 28), (32, 32, 3)])
def test_tf_and_torch_batchnorm_cnns_compute_the_same_function_before_training(name: str, shape: tuple[int, ...]) -> None:
    """Same weights, same layer names, same padding: strided convs pad 1 on every side on both
    frontends (Keras 'same' alone would pad only bottom/right)."""
    torch = pytest.importorskip("torch")
    from condition.frontends.tf.models import build_builtin
    from condition.frontends.torch.models import build_model

    x = np.random.default_rng(7).random((16, *shape), dtype=np.float32)
    torch_model = build_model(parse_model_spec(name), shape, 10, seed=3)
    tf_model = build_builtin(name, shape, 10, seed=3)
    torch_model.eval()
    with torch.no_grad():
        torch_eval = torch_model(_torch_input(torch, x)).numpy()
    tf_eval = tf_model(x, training=False).numpy()
    assert np.abs(torch_eval - tf_eval).max() < 1e-4 * np.abs(tf_eval).max()  # BN as identity: small outputs
    torch_model.train()  # BatchNorm on batch statistics: outputs of order 1, every layer exercised
    with torch.no_grad():
        torch_train = torch_model(_torch_input(torch, x)).numpy()
    tf_train = tf_model(x, training=True).numpy()
    assert np.abs(tf_train).max() > 0.1 and np.abs(torch_train - tf_train).max() < 1e-4

    weighted = {l.name for l in tf_model.layers if l.get_weights()}
    assert weighted == {n for n, m in torch_model.named_modules() if any(True for _ in m.parameters(recurse=False))}
    assert {"stem", "stem_bn", "block1_dw", "fc"} <= weighted
    assert tf_model.count_params() - sum(p.numel() for p in torch_model.parameters()) == 2 * sum(
        m.num_features for m in torch_model.modules() if isinstance(m, torch.nn.BatchNorm2d))  # Keras counts moving stats
