"""1-D k-means weight sharing in numpy: one implementation for the torch frontend's clustering and
the tf frontend's depthwise layers (tfmot does not cluster DepthwiseConv2D), so both sides share
values the same way. Sparsity-preserving clustering follows tfmot's: zero is one of the k values,
and a weight nearer to 0 than to any other shared value becomes 0 (`zero_centroid_kmeans`).

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
    return _lloyd(values, np.sort(init_centroids(values, k, method, rng)), np.zeros(k, dtype=bool))


def _lloyd(values: np.ndarray, centroids: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's iterations from sorted `centroids`; the `fixed` ones do not move (they stay in
    place in the order, as every other centroid stays on its side of them)."""
    k = len(centroids)
    for _ in range(KMEANS_ITERATIONS):
        assign = np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)  # nearest centroid in 1-D
        sums = np.bincount(assign, weights=values, minlength=k)
        counts = np.bincount(assign, minlength=k)
        new = np.where(fixed | (counts == 0), centroids, sums / np.maximum(counts, 1))
        order = np.argsort(new, kind="stable")
        new, fixed = new[order], fixed[order]
        if np.allclose(new, centroids):
            break
        centroids = new
    return centroids, np.searchsorted((centroids[1:] + centroids[:-1]) / 2, values)


def zero_centroid_kmeans(values: np.ndarray, k: int, method: CentroidInit, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """tfmot's sparsity-aware clustering on the non-zero `values`: one of the `k` centroids is
    fixed at 0, the other k-1 are shared between the negative and the positive values in
    proportion to their counts and initialised on each side with `method`
    (tfmot's `_zero_centroid_initialization`); Lloyd's iterations then move all but the zero.
    A value nearer to 0 than to any other centroid joins the zero cluster, as in tfmot.
    Returns (centroids, index of each value's centroid); the zero is `centroids[i] == 0`."""
    values = values.astype(np.float64)
    negative, positive = values[values < 0], values[values > 0]
    n_negative = int(round((k - 1) * len(negative) / max(len(values), 1)))
    n_positive = k - 1 - n_negative
    sides = [init_centroids(side, n, method, rng) for side, n in ((negative, n_negative), (positive, n_positive)) if n > 0 and len(side)]
    centroids = np.concatenate([np.zeros(1), *sides])
    fixed = np.zeros(len(centroids), dtype=bool)
    fixed[0] = True
    order = np.argsort(centroids, kind="stable")
    return _lloyd(values, centroids[order], fixed[order])


def initial_centroids(weights: np.ndarray, k: int, method: CentroidInit, preserve_zeros: bool, rng: np.random.Generator) -> np.ndarray:
    """The k shared values a layer starts from, sorted: k-means of all weights, or with
    `preserve_zeros` an exact 0 and k-1 values fitted to the non-zero weights (`zero_centroid_kmeans`)."""
    flat = weights.reshape(-1)
    if not preserve_zeros:
        return kmeans_1d(flat, k, method, rng)[0]
    live = flat[flat != 0]
    return zero_centroid_kmeans(live, k, method, rng)[0] if len(live) else np.zeros(1)


def cluster_indices(weights: np.ndarray, k: int, method: CentroidInit, preserve_zeros: bool, rng: np.random.Generator) -> np.ndarray:
    """Cluster index per weight (shape of `weights`), at most `k` clusters. With `preserve_zeros`
    (tfmot's sparsity-preserving clustering) zero is one of the `k` values: index -1 marks the
    weights pinned at zero, the zeros themselves and the non-zero weights nearest to 0
    (`zero_centroid_kmeans`), and the other weights share k-1 values."""
    flat = weights.reshape(-1)
    if not preserve_zeros:
        return kmeans_1d(flat, k, method, rng)[1].reshape(weights.shape)
    assign = np.full(flat.shape, -1, dtype=np.int64)
    live = flat != 0
    if live.any():
        centroids, index = zero_centroid_kmeans(flat[live], k, method, rng)
        zero = int(np.flatnonzero(centroids == 0)[0])
        assign[live] = np.where(index == zero, -1, index - (index > zero))
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
