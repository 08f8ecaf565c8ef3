"""Weight constraints that later steps must keep: pruning masks and shared cluster values.

A technique leaves its constraint on the model (attribute `_condition_constraints`), and every
later fine-tuning (cluster, QAT) re-applies all of them after each optimizer step, so a pruned
model stays pruned and a clustered model stays clustered. Parameters are found by name, which
survives torch.export and prepare_qat_pt2e (their GraphModules keep the attribute paths).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

ATTR = "_condition_constraints"


def weight_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights a technique conditions: every parameter named *weight with 2+ dimensions
    (Linear and Conv weights; biases and norms stay as they are)."""
    return {name: p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].endswith("weight") and p.ndim >= 2}


def find_param(model: nn.Module, name: str) -> nn.Parameter | None:
    """A parameter by its dotted name, also after export (which may flatten dots to underscores)."""
    params = dict(model.named_parameters())
    found = params.get(name)
    return found if found is not None else params.get(name.replace(".", "_"))


@dataclass(frozen=True)
class MaskConstraint:
    """Zeros stay zero: `masks[name]` is 1 where the weight may be non-zero."""

    masks: dict[str, torch.Tensor]

    def apply(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, mask in self.masks.items():
                p = find_param(model, name)
                if p is not None:
                    p.mul_(mask)


@dataclass(frozen=True)
class ClusterConstraint:
    """Weights of one cluster share one value: after each step every cluster's weights are set
    to their mean, which for SGD equals averaging the gradient over the cluster."""

    assignments: dict[str, torch.Tensor]  # int64 cluster index per weight; -1 = pinned at zero
    clusters: int

    def apply(self, model: nn.Module) -> None:
        with torch.no_grad():
            for name, assign in self.assignments.items():
                p = find_param(model, name)
                if p is None:
                    continue
                flat, idx = p.view(-1), assign.view(-1)
                live = idx >= 0
                sums = torch.zeros(self.clusters, dtype=p.dtype).index_add_(0, idx[live], flat[live])
                counts = torch.zeros(self.clusters, dtype=p.dtype).index_add_(0, idx[live], torch.ones_like(flat[live]))
                centroids = sums / counts.clamp(min=1)
                new = torch.zeros_like(flat)
                new[live] = centroids[idx[live]]
                p.copy_(new.view_as(p))


Constraint = MaskConstraint | ClusterConstraint


def constraints_of(model: nn.Module) -> list[Constraint]:
    return list(getattr(model, ATTR, []))


def add_constraint(model: nn.Module, constraint: Constraint) -> None:
    # object.__setattr__ keeps nn.Module from treating the list as a submodule/buffer.
    object.__setattr__(model, ATTR, [*constraints_of(model), constraint])


def copy_constraints(src: nn.Module, dst: nn.Module) -> None:
    object.__setattr__(dst, ATTR, constraints_of(src))


def apply_all(model: nn.Module, constraints: list[Constraint] | None = None) -> None:
    for c in constraints if constraints is not None else constraints_of(model):
        c.apply(model)


def hook_for(model: nn.Module, constraints: list[Constraint] | None = None):
    """A `train()` after-step hook that re-applies the constraints to `model`."""
    cs = constraints if constraints is not None else constraints_of(model)
    return lambda step, total: apply_all(model, cs)
