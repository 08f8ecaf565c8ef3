"""Magnitude pruning with tfmot: wrap → fit with UpdatePruningStep → strip, on a fresh clone.

Which layers: `PruneConfig.left_out` (the policy both frontends share). Scope `layer` (default)
prunes each chosen layer to the sparsity (tfmot's own way); pruned at once
(`PruneConfig.keeps_every_channel`: the constant schedule) each output channel keeps its largest
weight first (`condition.pruning.layer_mask`, the same on torch), pruned one-shot and retrained
with that mask frozen, so no channel is emptied. `global` ranks the chosen layers' weights
together once, as the torch side (the seed's global L1) does, and prunes each layer to the share
that ranking gives it (tfmot keeps at least one weight in a layer).

`2:4` keeps two of every four consecutive input-channel weights (tfmot's `sparsity_m_by_n`), the
pattern whose zeros U85's MAC array skips. A `--sparsity` above 0.5 then prunes further *inside*
the pattern: a second, unstructured magnitude pass ranks the 2:4 zeros lowest, so they stay zero
and every group of four still has at least two zeros, while Vela compresses the extra zeros away.

With `fine_tune_epochs=0` the weights are pruned one-shot, with no retraining.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
from condition.frontends.tf.layers import kernel_of, layer_infos
from condition.frontends.tf.models import clone
from condition.fine_tuning import FineTune, fine_tune_epochs
from condition.frontends.tf.train import TrainData, fit
from condition.pruning import layer_mask
from condition.techniques import PruneConfig, Schedule, Scope, Structure, plan_note

STEP = PruneConfig.name


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


def _wrap_fit_strip(model: Any, data: TrainData, epochs: int, wrap_kwargs: dict[str, dict[str, Any]],
                    fine_tune: FineTune | None = None) -> Any:
    """The tfmot lifecycle on a clone: wrap the layers named in `wrap_kwargs` (each with its own
    prune_low_magnitude arguments), fit with UpdatePruningStep, strip."""
    _, keras, tfmot = keras_modules()
    s = tfmot.sparsity.keras

    def wrap(layer: Any) -> Any:
        kwargs = wrap_kwargs.get(layer.name)
        return s.prune_low_magnitude(layer, **kwargs) if kwargs is not None else layer

    # tfmot's documented per-layer pattern: the wrappers reuse the clone's layers and their weights.
    wrapped = keras.models.clone_model(clone(model), clone_function=wrap)
    fit(wrapped, data, epochs, STEP, callbacks=[s.UpdatePruningStep()], fine_tune=fine_tune)
    return s.strip_pruning(wrapped)


def _input_axis(kernel: np.ndarray) -> int:
    """Axis of the input channels in a Keras kernel ((in, out) or (kh, kw, in, out)): where 2:4 groups run."""
    return kernel.ndim - 2


def _pattern(kernel: np.ndarray, config: PruneConfig) -> np.ndarray | None:
    return two_four_mask(kernel, _input_axis(kernel)) if config.structure is Structure.TWO_FOUR else None


def shares(model: Any, config: PruneConfig, names: list[str]) -> dict[str, float]:
    """Sparsity per chosen layer: for scope `layer` the request, capped per layer (PruneConfig.layer_sparsity);
    for `global`, each layer's share of one magnitude ranking over all chosen layers (2:4 zeros ranked first),
    at most all but one weight (tfmot keeps one)."""
    if config.scope is Scope.LAYER:
        infos = layer_infos(model)
        return {n: config.layer_sparsity(infos[n]) for n in names}
    kernels = {n: kernel_of(model.get_layer(n)).numpy() for n in names}
    allowed = {n: _pattern(k, config) for n, k in kernels.items()}
    dropped = global_drop_counts(kernels, config.sparsity, allowed)
    return {n: min(dropped[n] / k.size, 1.0 - 1.0 / k.size) for n, k in kernels.items()}


def global_drop_counts(kernels: dict[str, np.ndarray], sparsity: float, allowed: dict[str, np.ndarray | None]) -> dict[str, int]:
    """How many weights of each layer one global |w| ranking zeroes (the torch side's global L1);
    weights outside `allowed` (the 2:4 pattern's zeros) go first and count towards the share."""
    scores = np.concatenate([np.where(allowed[n] == 0, -1.0, np.abs(k)).ravel() if allowed[n] is not None
                             else np.abs(k).ravel() for n, k in kernels.items()])
    total = len(scores)
    drop = np.zeros(total, dtype=bool)
    pattern_zeros = int(np.count_nonzero(scores < 0))
    count = max(int(round(sparsity * total)), pattern_zeros)
    drop[np.argsort(scores, kind="stable")[:count]] = True
    out, start = {}, 0
    for n, k in kernels.items():
        out[n] = int(drop[start:start + k.size].sum())
        start += k.size
    return out


def _one_shot(model: Any, config: PruneConfig, per_layer: dict[str, float]) -> Any:
    """Prune without retraining: per chosen layer, zero the smallest weights (inside 2:4 when asked)."""
    pruned = clone(model)
    for name, sparsity in per_layer.items():
        layer = pruned.get_layer(name)
        variable = kernel_of(layer)
        kernel = variable.numpy()
        pattern = _pattern(kernel, config)
        if pattern is not None:
            kernel = kernel * pattern
        if config.keeps_every_channel:
            variable.assign(kernel * every_channel_mask(kernel, sparsity))
        else:
            variable.assign(kernel * magnitude_mask(kernel, max(sparsity, 0.5 if pattern is not None else 0.0)))
    return pruned


def every_channel_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """`condition.pruning.layer_mask` with every output channel kept: a Keras kernel's output
    channels are its last axis ((in, out) or (kh, kw, in, out))."""
    out = kernel.shape[-1]
    mask = layer_mask(np.abs(kernel).reshape(-1, out).T, sparsity, every_channel=True)
    return mask.T.reshape(kernel.shape).astype(kernel.dtype)


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
    infos = layer_infos(model)
    names = [n for n, info in infos.items() if config.left_out(info) is None]
    ctx.note(plan_note(config, list(infos.values())))
    per_layer = shares(model, config, names)
    epochs = fine_tune_epochs(config, len(data.x_train))
    if epochs == 0:
        return _one_shot(model, config, per_layer)
    steps = epochs * -(-len(data.x_train) // data.batch_size)
    _, _, tfmot = keras_modules()
    if config.keeps_every_channel:  # one-shot with every channel kept, then that mask frozen (as for 2:4 below)
        frozen = {n: {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(s, begin_step=1, end_step=1, frequency=1)}
                  for n, s in per_layer.items()}
        return _wrap_fit_strip(_one_shot(model, config, per_layer), data, epochs, frozen, ctx.fine_tune)
    if config.structure is Structure.UNSTRUCTURED:
        return _wrap_fit_strip(model, data, epochs, {n: {"pruning_schedule": _schedule(config, s, steps)} for n, s in per_layer.items()},
                               ctx.fine_tune)
    if config.sparsity <= 0.5:
        return _wrap_fit_strip(model, data, epochs, {n: {"pruning_schedule": _schedule(config, 0.5, steps), "sparsity_m_by_n": (2, 4)}
                                                     for n in names}, ctx.fine_tune)
    # Prune inside 2:4 one-shot (2:4 mask, then magnitude to the target), then retrain with that
    # mask frozen: tfmot picks it once at step 1 (the zeros rank lowest, so it is exactly the
    # one-shot pattern) and never again, so retraining cannot regrow a third weight in a group of
    # four and break the pattern U85 needs.
    inside = _one_shot(model, config, per_layer)
    frozen = {n: {"pruning_schedule": tfmot.sparsity.keras.ConstantSparsity(max(s, 0.5), begin_step=1, end_step=1, frequency=1)}
              for n, s in per_layer.items()}
    return _wrap_fit_strip(inside, data, epochs, frozen, ctx.fine_tune)
