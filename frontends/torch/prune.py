"""Magnitude pruning, unstructured or 2:4 along the input channels (U85's MAC array skips those
zeros), then retraining with the zeros held fixed.

    pruned = apply(model, PruneConfig(sparsity=0.95), ctx)

Which layers: `PruneConfig.left_out` (the policy both frontends share). Scope `layer` (default)
prunes each chosen layer to the sparsity (`PruneConfig.layer_sparsity`: less where a layer has few
weights per output channel) by its own |w| ranking, as tfmot does; pruned at once
(`PruneConfig.keeps_every_channel`) each output channel keeps its largest weight first, so no
channel is emptied (`condition.pruning.layer_mask`, the same on tf). `global` ranks the chosen
layers' weights together (the seed's `prune.global_unstructured` with L1Unstructured), which can
empty a small layer. With 2:4 and sparsity above 0.5 the 2:4 pattern is kept and
further weights are pruned inside it. The polynomial schedule ramps sparsity from 0 to the
target (cubic, as tfmot's PolynomialDecay) over the first 80 % of fine-tuning, then holds it.
"""
from __future__ import annotations

import torch
from torch import nn

from condition.datasets import Dataset
from condition.fine_tuning import fine_tune_epochs
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch.train import steps_per_epoch, train
from condition.pruning import layer_mask
from condition.techniques import PruneConfig, Schedule, Scope, Structure, plan_note

RAMP_FRACTION = 0.8  # polynomial schedule: reach the target after this share of fine-tuning steps
RAMP_UPDATES = 10  # masks recomputed this many times during the ramp


def global_l1_masks(weights: dict[str, torch.Tensor], sparsity: float,
                    allowed: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Zero the `sparsity` share of all weights with the smallest |w| across every layer at once
    (what torch.nn.utils.prune.global_unstructured with L1Unstructured does); weights outside
    `allowed` are already zero and count towards the share."""
    allowed = allowed or {n: torch.ones_like(w) for n, w in weights.items()}
    scores = torch.cat([(w.abs() * allowed[n]).flatten() for n, w in weights.items()])
    k = int(round(sparsity * scores.numel()))
    masks = {n: allowed[n].clone() for n in weights}
    if k <= 0:
        return masks
    # Pinned weights score -1 so they are chosen first; ties are broken by topk's order.
    pinned = torch.cat([(allowed[n] == 0).flatten() for n in weights])
    scores = torch.where(pinned, torch.full_like(scores, -1.0), scores)
    drop = torch.topk(scores, k, largest=False).indices
    keep = torch.ones_like(scores)
    keep[drop] = 0
    start = 0
    for n, w in weights.items():
        masks[n] = keep[start:start + w.numel()].view_as(w)
        start += w.numel()
    return masks


def two_four_mask(w: torch.Tensor) -> torch.Tensor:
    """Keep the 2 largest |w| of every 4 consecutive input channels (dim 1, innermost for the
    NPU's reduction); layers whose input channels are not a multiple of 4 stay dense."""
    if w.shape[1] % 4:
        return torch.ones_like(w)
    moved = w.movedim(1, -1)  # (out, [kh, kw,] in)
    groups = moved.abs().reshape(-1, 4)
    top = groups.topk(2, dim=1).indices
    mask = torch.zeros_like(groups).scatter_(1, top, 1.0)
    return mask.reshape(moved.shape).movedim(-1, 1).contiguous()


def masks_for(weights: dict[str, torch.Tensor], sparsity: float, structure: Structure,
              scope: Scope = Scope.LAYER, every_channel: bool = False) -> dict[str, torch.Tensor]:
    """Masks for the chosen layers' weights: per layer (each at `sparsity`; with `every_channel`
    each output channel keeps at least one weight, unstructured only) or one global ranking."""
    if scope is Scope.LAYER and every_channel and structure is Structure.UNSTRUCTURED:
        return {n: torch.from_numpy(layer_mask(w.abs().flatten(1).double().cpu().numpy(), sparsity, every_channel=True))
                .to(dtype=w.dtype, device=w.device).view_as(w) for n, w in weights.items()}
    if scope is Scope.LAYER:
        return {n: masks_for({n: w}, sparsity, structure, Scope.GLOBAL)[n] for n, w in weights.items()}
    if structure is Structure.TWO_FOUR:
        pattern = {n: two_four_mask(w) for n, w in weights.items()}
        pattern_sparsity = sum(float((m == 0).sum()) for m in pattern.values()) / sum(m.numel() for m in pattern.values())
        return global_l1_masks(weights, max(sparsity, pattern_sparsity), allowed=pattern)
    return global_l1_masks(weights, sparsity)


def polynomial_sparsity(target: float, step: int, ramp_steps: int) -> float:
    """tfmot PolynomialDecay (power 3) from 0 to `target` over `ramp_steps`."""
    if ramp_steps <= 0 or step >= ramp_steps:
        return target
    return target * (1.0 - (1.0 - step / ramp_steps) ** 3)


@REGISTRY.register(PruneConfig)
def apply(model: nn.Module, config: PruneConfig, ctx: StepContext) -> nn.Module:
    """A pruned, retrained copy of `model`; the caller's model is not changed."""
    data: Dataset = ctx.data
    seed, progress = ctx.seed, ctx.progress
    model = cons.copy_model(model)
    earlier = cons.constraints_of(model)
    infos = cons.layer_infos(model)
    names = [n for n, info in infos.items() if config.left_out(info) is None]
    ctx.note(plan_note(config, list(infos.values())))

    # Each layer's own target (PruneConfig.layer_sparsity), ramped on its own as tfmot ramps each wrapped layer.
    targets = {n: config.layer_sparsity(infos[n]) for n in names}

    def prune_at(step: int | None) -> cons.MaskConstraint:
        """The masks at fine-tuning `step` of the ramp, or at the targets (None)."""
        def at(target: float) -> float:
            return target if step is None else polynomial_sparsity(target, step, ramp_steps)

        params = cons.weight_params(model)
        weights = {n: params[n].detach() for n in names}
        if config.scope is Scope.LAYER:
            masks = {n: masks_for({n: w}, at(targets[n]), config.structure, config.scope, config.keeps_every_channel)[n]
                     for n, w in weights.items()}
        else:
            masks = masks_for(weights, at(config.sparsity), config.structure, config.scope) if weights else {}
        mask = cons.MaskConstraint(masks)
        mask.apply(model)
        return mask

    epochs = fine_tune_epochs(config, len(data.x_train))
    steps = epochs * steps_per_epoch(data)
    ramp = config.schedule is Schedule.POLYNOMIAL and steps > 0
    ramp_steps = int(steps * RAMP_FRACTION)
    every = max(ramp_steps // RAMP_UPDATES, 1)
    state = {"mask": prune_at(0 if ramp else None)}

    def after_step(step: int, total: int) -> None:
        if ramp and step <= ramp_steps and step % every == 0:
            state["mask"] = prune_at(step)
        state["mask"].apply(model)
        cons.apply_all(model, earlier)

    train(model, data, epochs, seed, after_step=[after_step], progress=progress, fine_tune=ctx.fine_tune)
    if ramp:  # the ramp may end between updates: finish at exactly the target
        state["mask"] = prune_at(None)
    # The reparametrisation is removed by construction: weights hold their zeros directly.
    cons.add_constraint(model, cons.MaskConstraint({n: state["mask"].masks[n] for n in names}))
    return model
