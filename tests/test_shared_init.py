"""Both frontends start the built-in models from the same weights (condition/init.py), so a
tf/torch difference in the report is the pipelines', not the initialisers'."""
from __future__ import annotations

import numpy as np
import pytest

from condition.init import initial_weights
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
