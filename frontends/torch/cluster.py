"""Weight clustering (k-means weight sharing per layer): each conditioned layer keeps only
`clusters` distinct values, so Vela's weight encoder sees long runs of a few values.

    clustered = apply(model, ClusterConfig(clusters=16), data)

Nothing in torch or torchao does this, so it is written here: 1-D k-means per layer with the
init of `ClusterConfig.centroid_init` (tfmot's choices), zeros kept at zero with
`preserve_sparsity`, fine-tuning with shared centroids (after each optimizer step every cluster
is set to its mean: the gradient averaged over the cluster), then stripped to plain weights.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from condition.datasets import Dataset
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch.train import train
from condition.techniques import CentroidInit, ClusterConfig

KMEANS_ITERATIONS = 30


def init_centroids(values: torch.Tensor, k: int, method: CentroidInit, generator: torch.Generator) -> torch.Tensor:
    """Starting centroids for 1-D k-means (linear: evenly spaced; density: evenly spaced in the
    CDF; random: uniform in [min, max]; kmeans++: D² sampling)."""
    lo, hi = values.min(), values.max()
    if method is CentroidInit.LINEAR:
        return torch.linspace(float(lo), float(hi), k)
    if method is CentroidInit.DENSITY:
        return torch.quantile(values, torch.linspace(0, 1, k))
    if method is CentroidInit.RANDOM:
        return lo + (hi - lo) * torch.rand(k, generator=generator)
    centroids = values[torch.randint(len(values), (1,), generator=generator)]
    for _ in range(1, k):
        d2 = ((values[:, None] - centroids[None, :]) ** 2).min(dim=1).values
        if float(d2.sum()) == 0.0:
            break
        pick = torch.multinomial(d2 / d2.sum(), 1, generator=generator)
        centroids = torch.cat([centroids, values[pick]])
    if len(centroids) < k:  # fewer distinct values than clusters: pad with duplicates
        centroids = torch.cat([centroids, centroids[-1:].repeat(k - len(centroids))])
    return centroids


def kmeans_1d(values: torch.Tensor, k: int, method: CentroidInit, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(centroids, assignment) of Lloyd's algorithm on a flat tensor."""
    sample = values if len(values) <= 200_000 else values[torch.randperm(len(values), generator=generator)[:200_000]]
    centroids = init_centroids(sample, k, method, generator).to(values.dtype)
    assign = torch.zeros(len(values), dtype=torch.long)
    for _ in range(KMEANS_ITERATIONS):
        centroids, order = centroids.sort()
        bounds = (centroids[1:] + centroids[:-1]) / 2  # nearest centroid in 1-D = bucketize midpoints
        assign = torch.bucketize(values, bounds)
        sums = torch.zeros(k, dtype=values.dtype).index_add_(0, assign, values)
        counts = torch.bincount(assign, minlength=k).to(values.dtype)
        new = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
        if torch.allclose(new, centroids):
            break
        centroids = new
    return centroids, assign


def cluster_weight(w: torch.Tensor, k: int, method: CentroidInit, preserve_zeros: bool, generator: torch.Generator) -> torch.Tensor:
    """Cluster index per weight; -1 marks zeros pinned at zero (their own, exact cluster)."""
    flat = w.detach().flatten()
    assign = torch.full(flat.shape, -1, dtype=torch.long)
    live = flat != 0 if preserve_zeros else torch.ones_like(flat, dtype=torch.bool)
    if preserve_zeros and bool((~live).any()):
        k -= 1  # zero is one of the k shared values
    if int(live.sum()) == 0:
        return assign.view_as(w)
    _, assign[live] = kmeans_1d(flat[live], max(k, 1), method, generator)
    return assign.view_as(w)


@REGISTRY.register(ClusterConfig)
def apply(model: nn.Module, config: ClusterConfig, ctx: StepContext) -> nn.Module:
    """A clustered, fine-tuned, stripped copy of `model`; the caller's model is not changed."""
    data: Dataset = ctx.data
    seed, progress = ctx.seed, ctx.progress
    model = copy.deepcopy(model)
    earlier = cons.constraints_of(model)
    generator = torch.Generator().manual_seed(seed)
    assignments = {
        name: cluster_weight(p, config.clusters, config.centroid_init, config.preserve_sparsity, generator)
        for name, p in cons.weight_params(model).items()
    }
    shared = cons.ClusterConstraint(assignments, config.clusters)
    shared.apply(model)  # weights take their centroid values

    def after_step(step: int, total: int) -> None:
        shared.apply(model)
        cons.apply_all(model, earlier)

    train(model, data, config.fine_tune_epochs, seed, after_step=[after_step], progress=progress)
    shared.apply(model)
    cons.add_constraint(model, shared)
    return model
