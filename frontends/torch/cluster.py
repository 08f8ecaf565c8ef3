"""Weight clustering (k-means weight sharing per layer): each conditioned layer keeps only
`clusters` distinct values, so Vela's weight encoder sees long runs of a few values.

    clustered = apply(model, ClusterConfig(clusters=16), ctx)

Nothing in torch or torchao does this, so it is written here: 1-D k-means per layer
(condition/clustering.py, shared with the tf frontend's depthwise layers) with the init of
`ClusterConfig.centroid_init` (tfmot's choices), zeros kept at zero with `preserve_sparsity`,
fine-tuning with shared centroids (after each optimizer step every cluster is set to its mean:
the gradient averaged over the cluster), then stripped to plain weights. Conv, depthwise and
Linear layers are clustered (`ClusterConfig.left_out` names the rest). BatchNorm is folded into
the conv before it first (frontends/torch/fold.py), as on the tf side: the shared values are
then the exported ones, k int8 codes per tensor.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from condition.clustering import cluster_indices
from condition.datasets import Dataset
from condition.frontend import StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import constraints as cons
from condition.frontends.torch.export import example_input
from condition.frontends.torch.fold import fold_batchnorm
from condition.frontends.torch.models import input_shape_nchw
from condition.frontends.torch.train import train
from condition.techniques import CentroidInit, ClusterConfig, plan_note

FOLD_NOTE = ("BatchNorm folded into the conv before it ({convs}) before clustering, the same way on both frontends: "
             "the clustered values are the exported ones")


def cluster_weight(w: torch.Tensor, k: int, method: CentroidInit, preserve_zeros: bool, rng: np.random.Generator) -> torch.Tensor:
    """Cluster index per weight; -1 marks zeros pinned at zero (their own, exact cluster)."""
    return torch.from_numpy(cluster_indices(w.detach().numpy(), k, method, preserve_zeros, rng))


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
    assignments = {
        name: cluster_weight(params[name], config.clusters, config.centroid_init, config.preserve_sparsity, rng)
        for name, info in infos.items() if config.left_out(info) is None
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
