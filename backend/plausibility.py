"""Results that cannot be right, caught before they become a row in a report.

A conditioned model at chance accuracy, a layer pruning emptied, or a clustered layer still holding
far more than k values is a bug (or a configuration that destroyed the model), never a figure to
compare. Each check reads only the record's measured figures; `problems` returns one sentence per
finding, stored in the record, printed by the CLI and shown instead of the row's figures by reports.
"""
from __future__ import annotations

from typing import Any

from condition.backend.metrics import AccuracyResult, WeightStats

# Accuracy within this share of the way from chance (1 / classes) to 1 is "near chance":
# 0.145 for 10 classes, 0.525 for 2.
NEAR_CHANCE = 0.05


def problems(accuracy: list[AccuracyResult], weights: WeightStats | None, stage_weights: list[WeightStats],
             options: dict[str, dict[str, Any]], classes: int) -> list[str]:
    """Sentences naming what cannot be right in these figures (empty when nothing is wrong)."""
    found = [*_near_chance(accuracy, classes)]
    for stats in [*stage_weights, weights]:
        if stats is not None:
            found += _emptied_layers(stats)
    if weights is not None and "cluster" in options:
        found += _too_many_values(weights, options["cluster"])
    return list(dict.fromkeys(found))  # a layer emptied at every stage is said once


def _near_chance(accuracy: list[AccuracyResult], classes: int) -> list[str]:
    if classes < 2:
        return []
    chance = 1.0 / classes
    return [f"{a.kind} accuracy {a.value:.3f} is near chance ({chance:.3f} for {classes} classes): the model did not learn or was destroyed"
            for a in accuracy if a.value <= chance + NEAR_CHANCE * (1.0 - chance)]


def _emptied_layers(stats: WeightStats) -> list[str]:
    return [f"layer {l.name} has every weight zero ({l.params} of {l.params}): pruning emptied it"
            for l in stats.layers if l.params and l.zeros == l.params]


def _too_many_values(stats: WeightStats, cluster: dict[str, Any]) -> list[str]:
    """More distinct int8 values than clusters in a clustered layer: the palette did not survive
    export. One more value is allowed when clustering preserved sparsity (zero kept beside k)."""
    k = int(cluster.get("clusters", 0))
    if k < 2:
        return []
    allowed = k + (1 if cluster.get("preserve_sparsity") else 0)
    return [f"clustered layer {l.name} holds {l.unique_values} distinct values per {l.unique_axis or 'tensor'} "
            f"after export (clusters {k}): clustering did not survive"
            for l in stats.layers if "cluster" in l.conditioned and l.unique_values > allowed]
