"""Magnitude pruning with tfmot: wrap → fit with UpdatePruningStep → strip, on a fresh clone.

`2:4` keeps two of every four consecutive input-channel weights (tfmot's `sparsity_m_by_n`), the
pattern whose zeros U85's MAC array skips. A `--sparsity` above 0.5 then prunes further *inside*
the pattern: a second, unstructured magnitude pass ranks the 2:4 zeros lowest, so they stay zero
and every group of four still has at least two zeros, while Vela compresses the extra zeros away.

With `fine_tune_epochs=0` the weights are pruned one-shot (no retraining), to see what the
pattern alone does to cycles.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
from condition.frontends.tf.models import clone
from condition.frontends.tf.train import TrainData, fit
from condition.techniques import PruneConfig, Schedule, Structure

STEP = PruneConfig.name


def _kernel_input_axis(layer: Any) -> int | None:
    """Axis of the input channels in a prunable layer's kernel (where 2:4 groups run), else None."""
    _, keras, _ = keras_modules()
    if isinstance(layer, keras.layers.Dense):
        return 0  # (in, out)
    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
        return 2  # (h, w, in, out)
    return None


def _two_four_ok(layer: Any) -> bool:
    axis = _kernel_input_axis(layer)
    return axis is not None and layer.kernel.shape[axis] % 4 == 0


def _schedule(config: PruneConfig, sparsity: float, steps: int) -> Any:
    """tfmot schedule; UpdatePruningStep counts from 1, so masks update on multiples of `frequency`."""
    _, _, tfmot = keras_modules()
    s = tfmot.sparsity.keras
    if config.schedule is Schedule.POLYNOMIAL:
        frequency = max(steps // 20, 1)
        end_step = frequency * max(int(steps * 0.8) // frequency, 1)  # reach the target, then recover
        return s.PolynomialDecay(initial_sparsity=0.0, final_sparsity=sparsity, begin_step=0,
                                 end_step=end_step, frequency=frequency)
    return s.ConstantSparsity(sparsity, begin_step=0, frequency=1)


def _wrap_fit_strip(model: Any, data: TrainData, epochs: int, wrap_kwargs: dict[str, Any], only_2_4: bool) -> Any:
    """The tfmot lifecycle on a clone: wrap prunable layers, fit with UpdatePruningStep, strip."""
    _, keras, tfmot = keras_modules()
    s = tfmot.sparsity.keras

    def wrap(layer: Any) -> Any:
        ok = _two_four_ok(layer) if only_2_4 else _kernel_input_axis(layer) is not None
        return s.prune_low_magnitude(layer, **wrap_kwargs) if ok else layer

    # tfmot's documented per-layer pattern: the wrappers reuse the clone's layers and their weights.
    wrapped = keras.models.clone_model(clone(model), clone_function=wrap)
    fit(wrapped, data, epochs, STEP, callbacks=[s.UpdatePruningStep()])
    return s.strip_pruning(wrapped)


def _one_shot(model: Any, config: PruneConfig) -> Any:
    """Prune without retraining: per layer, zero the smallest weights (inside 2:4 when asked)."""
    pruned = clone(model)
    for layer in pruned.layers:
        axis = _kernel_input_axis(layer)
        if axis is None:
            continue
        kernel, *rest = layer.get_weights()
        if config.structure is Structure.TWO_FOUR:
            if kernel.shape[axis] % 4:
                continue
            kernel = kernel * two_four_mask(kernel, axis)
        kernel = kernel * magnitude_mask(kernel, config.sparsity)
        layer.set_weights([kernel, *rest])
    return pruned


def two_four_mask(kernel: np.ndarray, axis: int) -> np.ndarray:
    """1 for the two largest-magnitude weights of every four consecutive along `axis`, else 0."""
    moved = np.moveaxis(np.abs(kernel), axis, -1)
    groups = moved.reshape(*moved.shape[:-1], moved.shape[-1] // 4, 4)
    order = np.argsort(groups, axis=-1)
    mask = np.ones_like(groups)
    np.put_along_axis(mask, order[..., :2], 0.0, axis=-1)
    return np.moveaxis(mask.reshape(moved.shape), -1, axis).astype(kernel.dtype)


def magnitude_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """1 for the largest (1 - sparsity) share of weights by magnitude; zeros rank lowest."""
    keep = int(round(kernel.size * (1.0 - sparsity)))
    mask = np.zeros(kernel.size, dtype=kernel.dtype)
    if keep > 0:
        mask[np.argsort(np.abs(kernel).ravel(), kind="stable")[-keep:]] = 1
    return mask.reshape(kernel.shape)


@REGISTRY.register(PruneConfig)
def apply(model: Any, config: PruneConfig, ctx: StepContext) -> Any:
    """Return a pruned copy of `model` (the caller's model is left as it was).

        pruned = prune.apply(float_model, PruneConfig(sparsity=0.95), ctx)
    """
    data: TrainData = ctx.data
    if config.fine_tune_epochs == 0:
        return _one_shot(model, config)
    steps = config.fine_tune_epochs * -(-len(data.x_train) // data.batch_size)
    epochs = config.fine_tune_epochs
    if config.structure is Structure.UNSTRUCTURED:
        return _wrap_fit_strip(model, data, epochs, {"pruning_schedule": _schedule(config, config.sparsity, steps)}, only_2_4=False)
    if config.sparsity <= 0.5:
        return _wrap_fit_strip(model, data, epochs, {"pruning_schedule": _schedule(config, 0.5, steps), "sparsity_m_by_n": (2, 4)}, only_2_4=True)
    # Prune inside 2:4 one-shot (2:4 mask, then magnitude to the target), then retrain with that
    # mask frozen: tfmot picks it once at step 1 (the zeros rank lowest, so it is exactly the
    # one-shot pattern) and never again, so retraining cannot regrow a third weight in a group of
    # four and break the pattern U85 needs.
    inside = _one_shot(model, config)
    _, _, tfmot = keras_modules()
    frozen = tfmot.sparsity.keras.ConstantSparsity(config.sparsity, begin_step=1, end_step=1, frequency=1)
    return _wrap_fit_strip(inside, data, epochs, {"pruning_schedule": frozen}, only_2_4=False)
