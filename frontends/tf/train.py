"""Training and float evaluation shared by every technique, plus the trained-float-model cache.

`condition compare` runs many chains on the same float model; the shared cache
(condition/float_cache.py) under `<out>/tf/.float-cache/<hash>/` trains it once per identity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from condition.fine_tuning import BATCH_SIZE, FineTune
from condition.float_cache import cached, file_identity, store
from condition.frontends.tf import keras_modules
from condition.run import Progress, no_progress

LEARNING_RATE = 1e-3  # the seed notebook's Adam rate


@dataclass(frozen=True)
class TrainData:
    """What a technique's fine-tuning needs: images already shaped for the model, labels, the seed."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    seed: int = 0
    batch_size: int = BATCH_SIZE
    progress: Progress = field(default=no_progress, compare=False)

    def calibration(self, n: int) -> np.ndarray:
        """`n` representative training images for int8 calibration, picked with the run's seed."""
        rng = np.random.default_rng(self.seed)
        idx = rng.choice(len(self.x_train), size=min(n, len(self.x_train)), replace=False)
        return self.x_train[np.sort(idx)]


def shaped(x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Data set images (N, H, W[, C]) reshaped to what the model takes, e.g. (N, 28, 28, 1)."""
    return x.reshape((len(x), *input_shape)).astype(np.float32)


def outputs_logits(model: Any) -> bool:
    """False when the model ends in a softmax (its outputs are probabilities)."""
    return getattr(getattr(model.layers[-1], "activation", None), "__name__", "") != "softmax"


def compile_for_training(model: Any, fine_tune: FineTune | None = None, steps: int = 0) -> None:
    """Adam 1e-3 and cross-entropy (float training); a technique's `fine_tune` brings its cosine-decayed
    rate over `steps` and, with teacher logits, the distillation loss (condition/fine_tuning.py)."""
    _, keras, _ = keras_modules()
    from_logits = outputs_logits(model)
    if fine_tune is None:
        model.compile(optimizer=keras.optimizers.Adam(LEARNING_RATE),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits), metrics=["accuracy"])
        return
    rate = keras.optimizers.schedules.CosineDecay(fine_tune.peak_learning_rate, max(steps, 1), alpha=fine_tune.final_fraction)
    loss = (distillation_loss(fine_tune.temperature, fine_tune.distill_weight, from_logits) if fine_tune.distilling
            else keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss=loss)


def distillation_loss(temperature: float, weight: float, from_logits: bool = True) -> Callable[[Any, Any], Any]:
    """(1 − α) · CE(y, s) + α · T² · KL(softmax(t/T) ‖ softmax(s/T)) per image (Keras takes the batch mean), for
    `y_true` packed as [label, teacher logits...] (see `fit`) so Keras' shuffling keeps each image's teacher."""
    tf, _, _ = keras_modules()

    def loss(y_true: Any, y_pred: Any) -> Any:
        labels = tf.cast(y_true[:, 0], tf.int32)
        teacher = y_true[:, 1:]
        student = y_pred if from_logits else tf.math.log(tf.clip_by_value(y_pred, 1e-7, 1.0))
        hard = tf.keras.losses.sparse_categorical_crossentropy(labels, student, from_logits=True)
        log_p_t = tf.nn.log_softmax(teacher / temperature, axis=1)
        log_p_s = tf.nn.log_softmax(student / temperature, axis=1)
        soft = tf.reduce_sum(tf.exp(log_p_t) * (log_p_t - log_p_s), axis=1)
        return (1.0 - weight) * hard + weight * temperature ** 2 * soft

    return loss


def _progress_callback(step: str, progress: Progress, epochs: int, batches: int) -> Any:
    _, keras, _ = keras_modules()

    class ReportProgress(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.epoch = epoch

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if batch % 10 == 0 or batch + 1 == batches:
                progress(step, (self.epoch * batches + batch + 1) / max(epochs * batches, 1))

    return ReportProgress()


def fit(model: Any, data: TrainData, epochs: int, step: str, callbacks: list[Any] | None = None,
        fine_tune: FineTune | None = None) -> int:
    """Compile (Adam 1e-3, cross-entropy; a technique's `fine_tune`: its schedule and distillation) and fit
    with the technique's callbacks; shows progress. Then BatchNorm statistics are re-estimated (see
    `recalibrate_batchnorm`); returns the number of images they were re-estimated on (0: no BatchNorm,
    or no training with `epochs` 0)."""
    if epochs <= 0:
        return 0
    _, keras, _ = keras_modules()
    keras.utils.set_random_seed(data.seed)
    batches = -(-len(data.x_train) // data.batch_size)
    compile_for_training(model, fine_tune, epochs * batches)
    targets = data.y_train
    if fine_tune is not None and fine_tune.distilling:
        if len(fine_tune.teacher_logits) != len(targets):
            raise RuntimeError(f"teacher logits for {len(fine_tune.teacher_logits)} images, {len(targets)} training images")
        targets = np.concatenate([targets[:, None].astype(np.float32), fine_tune.teacher_logits], axis=1)
    model.fit(
        data.x_train, targets, batch_size=data.batch_size, epochs=epochs, shuffle=True, verbose=0,
        callbacks=[*(callbacks or []), _progress_callback(step, data.progress, epochs, batches)],
    )
    return recalibrate_batchnorm(model, data)


# ---- BatchNorm statistics, treated as on the torch side (frontends/torch/train.py) ------------

BN_RECALIBRATION_IMAGES = 2048  # the same count, images and batch size as the torch side
BATCHNORM_NOTE = ("BatchNorm statistics re-estimated after each training step: mean of the per-batch statistics "
                  "over {images} training images in training mode, no weight updates")


def batchnorm_note(model: Any, trained: bool, train_images: int) -> str | None:
    """The record's note when training ran on a model with BatchNorm (then every training step
    re-estimated its statistics); None otherwise, e.g. a user's model with --epochs 0."""
    if not trained or not batchnorm_layers(model):
        return None
    return BATCHNORM_NOTE.format(images=min(BN_RECALIBRATION_IMAGES, train_images))


def batchnorm_layers(model: Any) -> list[Any]:
    """Every BatchNormalization layer, also inside tfmot wrappers (prune, cluster, quantize) and
    nested models."""
    _, keras, _ = keras_modules()
    found: list[Any] = []

    def walk(layer: Any) -> None:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif getattr(layer, "layer", None) is not None:  # a tfmot wrapper
            walk(layer.layer)
        elif isinstance(layer, keras.Model):
            for inner in layer.layers:
                walk(inner)

    walk(model)
    return found


def recalibrate_batchnorm(model: Any, data: TrainData) -> int:
    """Replace every BatchNorm's moving statistics by the mean of its batch statistics over
    `BN_RECALIBRATION_IMAGES` seeded training images, run in training mode without weight updates.

    Why: moving averages lag the weights (Keras' default momentum 0.99 barely moves in a short
    run), so inference-mode accuracy can sit far below what training reached; torch re-estimates
    the same way (its momentum=None cumulative average), so both frontends compare. Every other
    variable (weights, pruning masks, cluster indices, fake-quant ranges) is restored after each
    batch. Returns the number of images used (0 without BatchNorm).
    """
    layers = batchnorm_layers(model)
    if not layers:
        return 0
    images = data.calibration(BN_RECALIBRATION_IMAGES)
    variables = model.variables
    saved = [v.numpy() for v in variables]
    momenta = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape)] for layer in layers]
    batches = np.array_split(images, max(len(images) // data.batch_size, 1))
    try:
        for layer in layers:
            layer.momentum = 0.0  # moving statistics := this batch's statistics
        for batch in batches:
            model(batch, training=True)
            for (mean, var), layer in zip(sums, layers):
                mean += layer.moving_mean.numpy()
                var += layer.moving_variance.numpy()
            for v, value in zip(variables, saved):
                v.assign(value)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        for v, value in zip(variables, saved):
            v.assign(value)
    for (mean, var), layer in zip(sums, layers):
        layer.moving_mean.assign(mean / len(batches))
        layer.moving_variance.assign(var / len(batches))
    return len(images)


def float_accuracy(model: Any, data: TrainData) -> float:
    """Top-1 accuracy of the float32 Keras model on the test images."""
    logits = model.predict(data.x_test, batch_size=512, verbose=0)
    return float(np.mean(np.argmax(logits, axis=-1) == data.y_test))


# ---- trained float model cache (condition/float_cache.py; this side saves and loads Keras) ----

model_file_identity = file_identity  # the name frontend.py keys user model and data set files with
MODEL_FILE = "model.keras"


def cached_float_model(cache_root: Path, identity: dict[str, Any],
                       train: Callable[[Callable[[int, Any], None]], Any]) -> tuple[Any, bool]:
    """Load the trained float model for `identity`, or train it and store it atomically.
    `train(snapshot)` trains; `snapshot(e, make)` stores the model `make()` gives after epoch e as
    the entry of the same identity with e epochs, unless that entry exists (see `epoch_snapshots`).

    Returns (model, came_from_cache).
    """
    _, keras, _ = keras_modules()

    def save(model: Any, folder: Path) -> None:
        model.save(folder / MODEL_FILE)

    def load(folder: Path) -> Any:
        return keras.models.load_model(folder / MODEL_FILE, compile=False)

    def snapshot(epochs: int, make: Callable[[], Any]) -> None:
        store(cache_root, {**identity, "epochs": epochs}, make, save)

    return cached(cache_root, identity, lambda: train(snapshot), save, load)


def epoch_snapshots(data: TrainData, epochs: int, snapshot: Callable[[int, Callable[[], Any]], None]) -> Any:
    """A Keras callback giving `snapshot(e, make)` the model after each epoch e < `epochs`:
    `make()` finishes it as `fit` finishes an e-epoch training (BatchNorm statistics
    re-estimated) and is called only when that entry is not cached yet. The training model itself
    is handed over and every variable restored afterwards, so training goes on exactly as without
    it: epoch e of an E-epoch fit is the end of an e-epoch fit (the same seeded batch order, the
    same optimizer state), checked in tests/test_float_snapshots.py."""
    _, keras, _ = keras_modules()

    class EpochSnapshots(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            if epoch + 1 >= epochs:
                return
            variables = self.model.variables
            saved = [v.numpy() for v in variables]

            def finished() -> Any:
                recalibrate_batchnorm(self.model, data)
                return self.model

            try:
                snapshot(epoch + 1, finished)
            finally:
                for v, value in zip(variables, saved):
                    v.assign(value)

    return EpochSnapshots()


def train_logits(model: Any, data: TrainData) -> np.ndarray:
    """The model's logits for every training image, in order (a distillation teacher's); the log of a
    softmax model's probabilities."""
    out = model.predict(data.x_train, batch_size=1024, verbose=0).astype(np.float32)
    return out if outputs_logits(model) else np.log(np.clip(out, 1e-7, 1.0))
