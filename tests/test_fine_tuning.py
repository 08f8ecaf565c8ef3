"""The fine-tuning recipe (condition/fine_tuning.py) is the same on both frontends: the distillation loss
gives the formula's value on known logits and no distillation gradient when the teacher is the student, and
the learning rates of Keras' CosineDecay and of the torch loop are the formula's, step for step."""
from __future__ import annotations

import math

import numpy as np
import pytest

from condition.fine_tuning import FineTune, distillation_loss, learning_rate

STUDENT = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], np.float32)
TEACHER = np.array([[1.0, 1.5, -0.5], [0.0, -1.0, 2.0]], np.float32)
LABELS = np.array([0, 2])
T, ALPHA = 4.0, 0.5


def _by_hand() -> float:
    """The docstring's formula, written out once more without numpy's help."""
    total = 0.0
    for s, t, y in zip(STUDENT.tolist(), TEACHER.tolist(), LABELS.tolist()):
        ce = -math.log(math.exp(s[y]) / sum(math.exp(v) for v in s))
        p_t = [math.exp(v / T) / sum(math.exp(w / T) for w in t) for v in t]
        p_s = [math.exp(v / T) / sum(math.exp(w / T) for w in s) for v in s]
        kl = sum(a * math.log(a / b) for a, b in zip(p_t, p_s))
        total += (1 - ALPHA) * ce + ALPHA * T * T * kl
    return total / len(LABELS)


def test_reference_loss_is_the_formula() -> None:
    assert distillation_loss(STUDENT, TEACHER, LABELS, T, ALPHA) == pytest.approx(_by_hand(), rel=1e-6)
    # teacher = student: only the hard term is left
    assert distillation_loss(STUDENT, STUDENT, LABELS, T, ALPHA) == pytest.approx(
        (1 - ALPHA) * distillation_loss(STUDENT, STUDENT, LABELS, T, 0.0), rel=1e-6)


def test_torch_loss_value_and_no_gradient_from_an_identical_teacher() -> None:
    import torch

    from condition.frontends.torch.train import distillation_loss as torch_loss

    s = torch.tensor(STUDENT, requires_grad=True)
    value = torch_loss(s, torch.tensor(TEACHER), torch.tensor(LABELS), T, ALPHA)
    assert value.item() == pytest.approx(_by_hand(), rel=1e-5)
    # the KL term alone (α = 1, no labels' part) has zero gradient when the teacher is the student
    s = torch.tensor(STUDENT, requires_grad=True)
    torch_loss(s, s.detach().clone(), torch.tensor(LABELS), T, 1.0).backward()
    assert s.grad is not None and float(s.grad.abs().max()) < 1e-6
    # …and a different teacher does pull
    s = torch.tensor(STUDENT, requires_grad=True)
    torch_loss(s, torch.tensor(TEACHER), torch.tensor(LABELS), T, 1.0).backward()
    assert float(s.grad.abs().max()) > 1e-2


def test_keras_loss_value_and_no_gradient_from_an_identical_teacher() -> None:
    from condition.frontends.tf import keras_modules
    from condition.frontends.tf.train import distillation_loss as keras_loss

    tf = keras_modules()[0]
    packed = lambda teacher: tf.constant(np.concatenate([LABELS[:, None].astype(np.float32), teacher], axis=1))  # noqa: E731
    value = float(tf.reduce_mean(keras_loss(T, ALPHA)(packed(TEACHER), tf.constant(STUDENT))))
    assert value == pytest.approx(_by_hand(), rel=1e-5)
    for teacher, pulls in ((STUDENT, False), (TEACHER, True)):
        s = tf.Variable(STUDENT)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(keras_loss(T, 1.0)(packed(teacher), s))
        grad = float(tf.reduce_max(tf.abs(tape.gradient(loss, s))))
        assert (grad > 1e-2) if pulls else (grad < 1e-6)


def test_schedule_is_the_same_on_both_frontends() -> None:
    """Keras' CosineDecay (the tf side's optimizer rate) and the rate the torch loop sets, step by step."""
    from condition.frontends.tf import keras_modules

    keras = keras_modules()[1]
    assert FineTune().learning_rate(0, 40) == FineTune().learning_rate(40, 40) == 1e-3  # the default: the float rate, constant
    ft = FineTune(peak_learning_rate=5e-4, final_fraction=0.05)  # a cosine decay
    total = 40
    keras_rate = keras.optimizers.schedules.CosineDecay(ft.peak_learning_rate, total, alpha=ft.final_fraction)
    ours = [ft.learning_rate(k, total) for k in range(total + 1)]
    assert [float(keras_rate(k)) for k in range(total + 1)] == pytest.approx(ours, rel=1e-5)
    assert ours[0] == pytest.approx(ft.peak_learning_rate) and ours[-1] == pytest.approx(ft.peak_learning_rate * ft.final_fraction)
    assert all(a >= b for a, b in zip(ours, ours[1:]))  # decays
    assert learning_rate(5, 0, 1e-3, 0.1) == 1e-3


def test_torch_loop_sets_the_scheduled_rate(monkeypatch) -> None:
    """The rate each optimizer step of the torch loop uses is the schedule's (recorded from Adam's param group)."""
    import torch

    from condition.datasets import Dataset
    from condition.frontends.torch import train as torch_train

    rng = np.random.default_rng(0)
    data = Dataset("tiny", rng.random((256, 4, 4), dtype=np.float32), rng.integers(0, 3, 256),
                   rng.random((8, 4, 4), dtype=np.float32), rng.integers(0, 3, 8))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
    seen: list[float] = []
    step = torch.optim.Adam.step

    def record(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", record)
    ft = FineTune(distill=True, peak_learning_rate=5e-4, final_fraction=0.05, teacher_logits=rng.random((256, 3), dtype=np.float32))
    torch_train.train(model, data, 2, 0, fine_tune=ft)
    total = 2 * torch_train.steps_per_epoch(data)
    assert seen == pytest.approx([ft.learning_rate(k, total) for k in range(total)])


def test_channel_prune_fine_tunes_at_its_own_rate_and_the_record_says_so() -> None:
    """channel-prune re-trains a smaller network at its own rate (2e-3 by default, or its recipe's); the other
    techniques keep the run's; the record's fine_tuning names the steps that differ."""
    from condition.techniques import ChannelPruneConfig, PruneConfig

    run = FineTune(distill=False)
    assert run.for_step(ChannelPruneConfig()).peak_learning_rate == 2e-3
    assert run.for_step(ChannelPruneConfig(learning_rate=5e-3)).learning_rate(10, 20) == 5e-3  # constant
    assert run.for_step(PruneConfig(0.9)) is run and run.peak_learning_rate == 1e-3
    described = run.describe("the dense float model", {"channel-prune": 3, "prune": 3}, {"channel-prune": 2e-3})
    assert described["step_learning_rates"] == {"channel-prune": 2e-3} and "step_learning_rates" not in run.describe("t", {})


def test_prune_chooses_its_fine_tuning_epochs_from_the_sparsity_and_the_steps() -> None:
    from condition.fine_tuning import fine_tune_epochs
    from condition.techniques import ClusterConfig, PruneConfig

    assert fine_tune_epochs(PruneConfig(sparsity=0.5), 12000) == 1
    assert fine_tune_epochs(PruneConfig(sparsity=0.9), 12000) == 3  # 94 steps an epoch: 3 epochs, the 282 steps that recovered
    assert fine_tune_epochs(PruneConfig(sparsity=0.9), 60000) == 1  # 469 steps in one epoch
    assert fine_tune_epochs(PruneConfig(sparsity=0.95), 12000) == 6  # 560 steps
    assert fine_tune_epochs(PruneConfig(sparsity=0.95), 60000) == 2
    assert fine_tune_epochs(PruneConfig(sparsity=0.95), 500) == 8  # at most 8
    assert fine_tune_epochs(PruneConfig(sparsity=0.95, fine_tune_epochs=2), 500) == 2  # as given
    assert fine_tune_epochs(ClusterConfig(), 500) == 1


def test_a_default_prune_of_a_small_batchnorm_cnn_recovers(tmp_path) -> None:
    """`condition torch prune --sparsity 0.9` with default options on a conv + BatchNorm + depthwise + residual CNN,
    1,000 training images: prune picks its epochs (8 here: 8 steps an epoch) and the int8 model stays within 3
    points of the dense one (one epoch, the old default, lost 11.7 points on 1,500 images: 0.349 against 0.466)."""
    import sys
    from pathlib import Path

    from conftest import needs_fashion_mnist  # noqa: F401  (skip marker below)
    from condition.datasets import FASHION_MNIST_DIR
    from condition.run import RunConfig, run_config
    from condition.techniques import PostTrainingQuantConfig, PruneConfig

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("Fashion-MNIST (dataset-fashion-mnist) not installed")
    sys.path.insert(0, str(Path(__file__).parent))
    base = dict(model="torch_test_models:bn_cnn", out=tmp_path, train_limit=1000, eval_limit=500, epochs=3)
    int8 = lambda rec: rec.accuracy_of("int8").value  # noqa: E731
    dense = int8(run_config(RunConfig("torch", (PostTrainingQuantConfig(),), **base)))
    chosen = run_config(RunConfig("torch", (PruneConfig(0.9),), **base))
    assert chosen.fine_tuning["epochs"] == {"prune": 8}
    assert dense > 0.25 and int8(chosen) >= dense - 0.03, (dense, int8(chosen))  # chance: 0.1
