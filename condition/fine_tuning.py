"""How every technique fine-tunes (prune, 2:4, cluster, qat and their chains), the same on both frontends:
the learning rate over the fine-tuning steps and, with `--distill`, knowledge distillation from the dense
float model the run started from. Float training itself is unchanged (Adam at 1e-3, constant).

The defaults are what measured best (bench/fine_tune_variants.py, the README's "Fine-tuning" table;
ds-cnn, 12,000 images, 2 float epochs, prune 0.9): the float rate, constant, without distillation. A lower
or decaying rate lost points in the short fine-tunings users run (1 epoch: 5e-4 cosine −5.5 points on tf,
1e-3 cosine −2.5, against 1e-3 constant), and distillation from a float model trained for a few epochs
held the student near its teacher (3 epochs: tf 0.749 with it, 0.782 without; torch 0.755 and 0.787;
dense int8 0.782 and 0.797). What recovered was more steps (PruneConfig.epochs_for). Both stay available:
`--distill`, and a FineTune with another peak and decay.

Learning rate at optimizer step k of K (cosine decay from `peak` to `final · peak`; `final` 1 is constant;
Keras' `CosineDecay` and this function give the same numbers, tests check both frontends):

    lr(k) = peak · (final + (1 − final) · ½ · (1 + cos(π · k / K)))

Loss (Hinton et al. 2015, as NNCF shipped it): with student logits s, teacher logits t, label y,
temperature T and weight α,

    L = (1 − α) · CE(y, softmax(s)) + α · T² · KL(softmax(t / T) ‖ softmax(s / T))

The T² keeps the soft term's gradient on the scale of the hard term's. A teacher identical to the student
adds no gradient (the KL term is at its minimum). The teacher's logits over the training images are
computed once per run (N × classes floats: 2.4 MB for 60,000 images and 10 classes) and indexed by each
batch, so distillation costs no teacher forward pass per step.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

# Chosen by measurement (bench/results/recovery.md): see the docstring.
PEAK_LEARNING_RATE = 1e-3  # the float training rate
FINAL_FRACTION = 1.0  # constant; 0.05 is a cosine decay to 5 % of the peak
TEMPERATURE = 4.0
DISTILL_WEIGHT = 0.5  # α
FINE_TUNE_VERSION = 2  # part of the run identity: raise when this recipe or PruneConfig.epochs_for changes


@dataclass(frozen=True)
class FineTune:
    """The fine-tuning recipe of one run, plus (when distilling) the teacher's logits on its training images."""

    distill: bool = False
    peak_learning_rate: float = PEAK_LEARNING_RATE
    final_fraction: float = FINAL_FRACTION
    temperature: float = TEMPERATURE
    distill_weight: float = DISTILL_WEIGHT
    teacher_logits: np.ndarray | None = field(default=None, compare=False, repr=False)

    def for_step(self, step: Any) -> "FineTune":
        """The recipe a technique fine-tunes with: the run's, at the technique's own peak rate when it has one
        (channel-prune: `ChannelPruneConfig.learning_rate`)."""
        rate = getattr(step, "learning_rate", None)
        return self if rate is None else replace(self, peak_learning_rate=float(rate))

    def learning_rate(self, step: int, total_steps: int) -> float:
        """The rate of optimizer step `step` (0-based) of `total_steps`."""
        return learning_rate(step, total_steps, self.peak_learning_rate, self.final_fraction)

    @property
    def distilling(self) -> bool:
        return self.distill and self.teacher_logits is not None

    def describe(self, teacher: str, epochs: dict[str, int], rates: dict[str, float] | None = None) -> dict[str, Any]:
        """What the record says about the fine-tuning (`MetricsRecord.fine_tuning`); `rates`: the steps that
        fine-tune at a peak rate of their own."""
        return {
            "schedule": (f"Adam at {self.peak_learning_rate:g}, constant" if self.final_fraction == 1.0 else
                         f"Adam, cosine decay from {self.peak_learning_rate:g} to {self.peak_learning_rate * self.final_fraction:g} "
                         "over the fine-tuning steps"),
            "peak_learning_rate": self.peak_learning_rate,
            "final_learning_rate": self.peak_learning_rate * self.final_fraction,
            "loss": (f"{1 - self.distill_weight:g} · CE(labels, student) + {self.distill_weight:g} · T² · "
                     f"KL(softmax(teacher/T) ‖ softmax(student/T)), T = {self.temperature:g}") if self.distilling
                    else "cross-entropy on the labels",
            "teacher": teacher if self.distilling else None,
            "temperature": self.temperature if self.distilling else None,
            "distill_weight": self.distill_weight if self.distilling else None,
            "epochs": epochs,
            **({"step_learning_rates": dict(rates)} if rates else {}),
        }


BATCH_SIZE = 128  # both frontends' training batch (the seed notebook's); frontends/*/train.py train with it


def fine_tune_epochs(step: Any, train_images: int) -> int:
    """The epochs a technique config fine-tunes for on `train_images` images (prune chooses them from its
    sparsity): what the frontends train and what the record says, from this one place."""
    epochs_for = getattr(step, "epochs_for", None)
    if epochs_for is not None:
        return int(epochs_for(-(-train_images // BATCH_SIZE)))
    return int(getattr(step, "fine_tune_epochs", 0) or 0)


def learning_rate(step: int, total_steps: int, peak: float, final_fraction: float) -> float:
    if total_steps <= 0:
        return peak
    progress = min(max(step, 0), total_steps) / total_steps
    return peak * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def distillation_loss(student: np.ndarray, teacher: np.ndarray, labels: np.ndarray, temperature: float,
                      weight: float) -> float:
    """The formula above in numpy (mean over the batch): the reference the frontends' losses are tested against."""
    def log_softmax(z: np.ndarray) -> np.ndarray:
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    hard = -log_softmax(student)[np.arange(len(labels)), labels].mean()
    p_t, log_p_t, log_p_s = np.exp(log_softmax(teacher / temperature)), log_softmax(teacher / temperature), log_softmax(student / temperature)
    soft = (p_t * (log_p_t - log_p_s)).sum(axis=1).mean()
    return float((1 - weight) * hard + weight * temperature ** 2 * soft)
