"""Weight clustering (k-means weight sharing per layer): each conditioned layer keeps only
`clusters` distinct values, so Vela's weight encoder sees long runs of a few values.

    clustered = apply(model, ClusterConfig(clusters=16), ctx)

Nothing in torch or torchao does this, so it is written here, the way tfmot's ClusterWeights does
it (the tf side's method): while fine-tuning, each clustered weight is a latent weight and k
trainable shared values (centroids, `SharedValues`), and every forward pass (`Clustering`) gives
each weight the value of its nearest centroid; the gradient passes straight through to the latent
weight and is summed over each cluster for its centroid, so a weight can move to another cluster
while fine-tuning. The centroids start from 1-D k-means (condition/clustering.py, shared with the
tf frontend's depthwise layers) with the init of `ClusterConfig.centroid_init` (tfmot's choices).
With `preserve_sparsity` (tfmot's sparsity-preserving clustering) one centroid is fixed at 0 and
the weights that start at 0 (pruned, or nearest to 0) stay 0; a weight may still join the zero
cluster later. After fine-tuning each weight takes its shared value (plain weights again) and its
cluster is kept as a constraint for QAT. Conv, depthwise and Linear layers are clustered
(`ClusterConfig.left_out` names the rest). BatchNorm is folded into the conv before it first
(frontends/torch/fold.py), as on the tf side: the shared values are then the exported ones, k
int8 codes per tensor.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from condition.clustering import initial_centroids
from condition.datasets import Dataset
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch.export import example_input
from condition.frontends.torch.fold import fold_batchnorm
from condition.frontends.torch.models import input_shape_nchw, set_train_mode
from condition.frontends.torch.train import recalibrate_batchnorm, train
from condition.techniques import ClusterConfig, plan_note

FOLD_NOTE = ("BatchNorm folded into the conv before it ({convs}) before clustering, the same way on both frontends: "
             "the clustered values are the exported ones")


class SharedValues(nn.Module):
    """tfmot's ClusterWeights for one weight: forward(latent) = the
    nearest centroid of each (masked) latent weight, with a straight-through gradient to the latent
    weight and the summed gradient of its members to each centroid (tfmot's SUM aggregation).
    `zero` = the index of the centroid fixed at 0 (sparsity preserving) or None; `mask` = 0 where
    the weight stays 0."""

    def __init__(self, centroids: np.ndarray, zero: int | None, mask: torch.Tensor | None) -> None:
        super().__init__()
        self.centroids = nn.Parameter(torch.tensor(centroids, dtype=torch.float32))
        self.zero = zero
        keep = torch.ones(len(centroids))
        if zero is not None:
            keep[zero] = 0.0
        self.register_buffer("keep", keep)  # the zero centroid's value and gradient stay 0
        self.register_buffer("mask", mask if mask is not None else torch.ones(()))

    def nearest(self, weight: torch.Tensor) -> torch.Tensor:
        """Index of the nearest centroid of each weight (ties: the lower index, as argmin)."""
        centroids = (self.centroids * self.keep).detach()
        ordered, order = torch.sort(centroids, stable=True)
        return order[torch.bucketize(weight.detach(), (ordered[1:] + ordered[:-1]) / 2)]

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        weight = latent * self.mask
        return (self.centroids * self.keep)[self.nearest(weight)] + (weight - weight.detach())

    def assignments(self, latent: torch.Tensor) -> torch.Tensor:
        """Cluster index per weight for `ClusterConstraint`: -1 for the zero cluster, the other
        centroids numbered 0.. in order."""
        index = self.nearest(latent * self.mask)
        if self.zero is None:
            return index
        return torch.where(index == self.zero, -1, index - (index > self.zero).long())


def shared_values(w: torch.Tensor, config: ClusterConfig, rng: np.random.Generator) -> SharedValues:
    """The shared values of weight `w`: centroids from 1-D k-means; with preserve_sparsity the
    weights whose nearest start value is 0 are masked at 0 (tfmot's sparsity mask)."""
    values = w.detach().numpy()
    centroids = initial_centroids(values, config.clusters, config.centroid_init, config.preserve_sparsity, rng)
    zero = int(np.flatnonzero(centroids == 0)[0]) if config.preserve_sparsity else None
    shared = SharedValues(centroids, zero, None)
    if zero is not None:
        shared.mask = (shared.nearest(w) != zero).to(w.dtype)
    return shared


class Clustering(nn.Module):
    """`model` trained through its shared values: forward runs `model` with each clustered weight
    replaced by `SharedValues`(its latent weight) (torch.func.functional_call, so exported
    GraphModules work too); the parameters are the model's (latent weights) and the centroids."""

    def __init__(self, model: nn.Module, shared: dict[str, SharedValues]) -> None:
        super().__init__()
        self.model = model
        self.names = list(shared)
        self.shared = nn.ModuleList(shared.values())

    def clustered(self) -> dict[str, torch.Tensor]:
        params = dict(self.model.named_parameters())
        return {name: values(params[name]) for name, values in zip(self.names, self.shared)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(self.model, self.clustered(), (x,), strict=False)

    def train(self, mode: bool = True) -> "Clustering":
        set_train_mode(self.model, mode)  # an exported GraphModule switches by graph rewrite
        self.training = mode
        return self


@REGISTRY.register(ClusterConfig)
def apply(model: nn.Module, config: ClusterConfig, ctx: StepContext) -> nn.Module:
    """A clustered, fine-tuned, stripped copy of `model`; the caller's model is not changed."""
    data: Dataset = ctx.data
    seed, progress = ctx.seed, ctx.progress
    model, folded = fold_batchnorm(cons.copy_model(model), example_input(input_shape_nchw(data.input_shape)), type(model).__name__)
    if folded:
        ctx.note(FOLD_NOTE.format(convs=", ".join(folded)))
    earlier = cons.constraints_of(model)
    infos = cons.layer_infos(model)
    ctx.note(plan_note(config, list(infos.values())))
    rng = np.random.default_rng(seed)
    params = cons.weight_params(model)
    clustering = Clustering(model, {name: shared_values(params[name], config, rng)
                                    for name, info in infos.items() if config.left_out(info) is None})

    def after_step(step: int, total: int) -> None:
        cons.apply_all(model, earlier)  # on the latent weights, as on plain ones before

    train(clustering, data, config.fine_tune_epochs, seed, after_step=[after_step], progress=progress, fine_tune=ctx.fine_tune)
    with torch.no_grad():  # the latent weights take their shared values
        assignments = {name: values.assignments(params[name]) for name, values in zip(clustering.names, clustering.shared)}
        for name, value in clustering.clustered().items():
            params[name].copy_(value)
    if isinstance(model, torch.fx.GraphModule):  # its BatchNorm ops are not modules: `train` could not see them
        recalibrate_batchnorm(model, data, seed)
        set_train_mode(model, False)
    shared = cons.ClusterConstraint(assignments, config.clusters)
    shared.apply(model)
    cons.apply_all(model, earlier)
    cons.add_constraint(model, shared)
    return model
