"""Weight clustering with tfmot: wrap → fit → strip, on a fresh clone.

Each Conv, depthwise and Dense layer's weights share `clusters` float values (centroids), so the
exported int8 tensor holds at most `clusters` codes and Vela's palette encodes it compactly
(`ClusterConfig.left_out` names the layers left out, the same on both frontends). BatchNorm is
folded into the conv before it first (frontends/tf/fold.py), as on the torch side: the converter
would otherwise rescale each output channel and spread the shared values.

tfmot clusters Conv2D and Dense; it refuses DepthwiseConv2D ("big unrecoverable accuracy loss"),
so depthwise layers get the torch side's method: 1-D k-means (condition/clustering.py) and, after
every training batch, each cluster set to its mean (`HoldClusters`). With `preserve_sparsity`
(tfmot's sparsity-preserving clustering) zeros from an earlier prune stay zero, so prune →
cluster keeps both savings. With `fine_tune_epochs=0` the centroids are fitted once and the
weights snapped to them.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from condition.clustering import cluster_indices, cluster_means
from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
from condition.frontends.tf.fold import fold_batchnorm
from condition.frontends.tf.layers import kernel_of, layer_infos
from condition.frontends.tf.models import clone
from condition.frontends.tf.train import TrainData, fit
from condition.techniques import CentroidInit, ClusterConfig, plan_note

FOLD_NOTE = ("BatchNorm folded into the conv before it ({convs}) before clustering, the same way on both frontends: "
             "the clustered values are the exported ones")
STEP = ClusterConfig.name


def _centroid_init(init: CentroidInit) -> Any:
    _, _, tfmot = keras_modules()
    c = tfmot.clustering.keras.CentroidInitialization
    return {
        CentroidInit.KMEANS_PLUS_PLUS: c.KMEANS_PLUS_PLUS,
        CentroidInit.LINEAR: c.LINEAR,
        CentroidInit.DENSITY: c.DENSITY_BASED,
        CentroidInit.RANDOM: c.RANDOM,
    }[init]


def hold_clusters(held: list[tuple[Any, np.ndarray, int]]) -> Any:
    """A Keras callback that sets each cluster of each held variable to its mean after every
    batch (for SGD, the gradient averaged over the cluster): [(variable, cluster index per
    weight (-1 = pinned zero), clusters)]."""
    _, keras, _ = keras_modules()

    class HoldClusters(keras.callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            for variable, assign, k in held:
                variable.assign(cluster_means(variable.numpy(), assign, k))

    return HoldClusters()


@REGISTRY.register(ClusterConfig)
def apply(model: Any, config: ClusterConfig, ctx: StepContext) -> Any:
    """Return a clustered copy of `model`.

        clustered = cluster.apply(pruned, ClusterConfig(clusters=16, preserve_sparsity=True), ctx)
    """
    data: TrainData = ctx.data
    _, keras, tfmot = keras_modules()
    c = tfmot.clustering.keras
    model, folded = fold_batchnorm(model)
    if folded:
        ctx.note(FOLD_NOTE.format(convs=", ".join(folded)))
    infos = layer_infos(model)
    ctx.note(plan_note(config, list(infos.values())))
    chosen = {n: info for n, info in infos.items() if config.left_out(info) is None}
    by_tfmot = {n for n, info in chosen.items() if info.kind != "depthwise"}
    kwargs = dict(number_of_clusters=config.clusters, cluster_centroids_init=_centroid_init(config.centroid_init),
                  preserve_sparsity=config.preserve_sparsity)
    # tfmot's documented per-layer pattern: the wrappers reuse the clone's layers and their weights.
    wrapped = keras.models.clone_model(clone(model), clone_function=lambda layer: c.cluster_weights(layer, **kwargs)
                                       if layer.name in by_tfmot else layer)
    rng = np.random.default_rng(data.seed)
    held = []
    for name in [n for n in chosen if n not in by_tfmot]:
        variable = kernel_of(wrapped.get_layer(name))
        assign = cluster_indices(variable.numpy(), config.clusters, config.centroid_init, config.preserve_sparsity, rng)
        variable.assign(cluster_means(variable.numpy(), assign, config.clusters))
        held.append((variable, assign, config.clusters))
    fit(wrapped, data, config.fine_tune_epochs, STEP, callbacks=[hold_clusters(held)] if held else [],
        fine_tune=ctx.fine_tune)
    return c.strip_clustering(wrapped)
