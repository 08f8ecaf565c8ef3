"""1-D k-means weight sharing in numpy: one implementation for the torch frontend's clustering and
the tf frontend's depthwise layers (tfmot does not cluster DepthwiseConv2D), so both sides share
values the same way.

    assign = cluster_indices(kernel, 16, CentroidInit.KMEANS_PLUS_PLUS, preserve_zeros=True, rng)
    kernel = cluster_means(kernel, assign, 16)   # after every optimizer step while fine-tuning
"""
from __future__ import annotations

import numpy as np

from condition.techniques import CentroidInit

KMEANS_ITERATIONS = 30
KMEANS_SAMPLE = 200_000  # k-means++ initialisation on at most this many weights


def init_centroids(values: np.ndarray, k: int, method: CentroidInit, rng: np.random.Generator) -> np.ndarray:
    """Starting centroids (tfmot's choices): linear = evenly spaced in [min, max]; density = evenly
    spaced in the CDF; random = uniform in [min, max]; kmeans++ = D² sampling."""
    lo, hi = float(values.min()), float(values.max())
    if method is CentroidInit.LINEAR:
        return np.linspace(lo, hi, k)
    if method is CentroidInit.DENSITY:
        return np.quantile(values, np.linspace(0, 1, k))
    if method is CentroidInit.RANDOM:
        return lo + (hi - lo) * rng.random(k)
    sample = values if len(values) <= KMEANS_SAMPLE else rng.choice(values, KMEANS_SAMPLE, replace=False)
    centroids = [float(sample[rng.integers(len(sample))])]
    d2 = (sample - centroids[0]) ** 2
    for _ in range(1, k):
        total = float(d2.sum())
        if total == 0.0:  # fewer distinct values than clusters: duplicates fill up
            break
        centroids.append(float(sample[rng.choice(len(sample), p=d2 / total)]))
        d2 = np.minimum(d2, (sample - centroids[-1]) ** 2)
    return np.array(centroids + [centroids[-1]] * (k - len(centroids)))


def kmeans_1d(values: np.ndarray, k: int, method: CentroidInit, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(centroids, index of each value's centroid) by Lloyd's algorithm on a flat array."""
    values = values.astype(np.float64)
    centroids = np.sort(init_centroids(values, k, method, rng))
    assign = np.zeros(len(values), dtype=np.int64)
    for _ in range(KMEANS_ITERATIONS):
        assign = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)  # nearest centroid in 1-D
        sums = np.bincount(assign, weights=values, minlength=k)
        counts = np.bincount(assign, minlength=k)
        new = np.sort(np.where(counts > 0, sums / np.maximum(counts, 1), centroids))
        if np.allclose(new, centroids):
            break
        centroids = new
    assign = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)
    return centroids, assign


def cluster_indices(weights: np.ndarray, k: int, method: CentroidInit, preserve_zeros: bool, rng: np.random.Generator) -> np.ndarray:
    """Cluster index per weight (shape of `weights`); -1 marks zeros pinned at zero, which then
    count as one of the `k` shared values."""
    flat = weights.reshape(-1)
    assign = np.full(flat.shape, -1, dtype=np.int64)
    live = flat != 0 if preserve_zeros else np.ones(flat.shape, dtype=bool)
    if preserve_zeros and not live.all():
        k -= 1
    if live.any():
        assign[live] = kmeans_1d(flat[live], max(k, 1), method, rng)[1]
    return assign.reshape(weights.shape)


def cluster_means(weights: np.ndarray, assign: np.ndarray, k: int) -> np.ndarray:
    """Every weight set to the mean of its cluster (pinned zeros stay 0). Applied after each
    optimizer step this equals averaging the gradient over the cluster."""
    flat, idx = weights.reshape(-1), assign.reshape(-1)
    live = idx >= 0
    sums = np.bincount(idx[live], weights=flat[live], minlength=k)
    counts = np.bincount(idx[live], minlength=k)
    out = np.zeros_like(flat)
    out[live] = (sums / np.maximum(counts, 1))[idx[live]]
    return out.reshape(weights.shape)
