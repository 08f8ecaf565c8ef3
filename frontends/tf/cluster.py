"""Weight clustering with tfmot: wrap → fit → strip, on a fresh clone.

Each prunable layer's weights share `clusters` float values (centroids); Vela then encodes few
distinct int8 values per channel compactly. With `preserve_sparsity` (tfmot's sparsity-preserving
clustering) zeros from an earlier prune stay zero, so prune → cluster keeps both savings.
With `fine_tune_epochs=0` the centroids are fitted once and the weights snapped to them.
"""
from __future__ import annotations

from typing import Any

from condition.frontend import StepContext
from condition.frontends.tf import REGISTRY, keras_modules
from condition.frontends.tf.models import clone
from condition.frontends.tf.train import TrainData, fit
from condition.techniques import CentroidInit, ClusterConfig

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


@REGISTRY.register(ClusterConfig)
def apply(model: Any, config: ClusterConfig, ctx: StepContext) -> Any:
    """Return a clustered copy of `model`.

        clustered = cluster.apply(pruned, ClusterConfig(clusters=16, preserve_sparsity=True), ctx)
    """
    data: TrainData = ctx.data
    _, _, tfmot = keras_modules()
    c = tfmot.clustering.keras
    wrapped = c.cluster_weights(
        clone(model),
        number_of_clusters=config.clusters,
        cluster_centroids_init=_centroid_init(config.centroid_init),
        preserve_sparsity=config.preserve_sparsity,
    )
    if wrapped is None:  # Keras 3 instead of tf_keras: tfmot returns None rather than failing
        raise RuntimeError("tfmot cluster_weights returned None: tensorflow was imported without TF_USE_LEGACY_KERAS=1")
    fit(wrapped, data, config.fine_tune_epochs, STEP)
    return c.strip_clustering(wrapped)
