"""Weight constraints that later steps must keep: pruning masks and shared cluster values.

A technique leaves its constraint on the model (attribute `_condition_constraints`), and every
later fine-tuning (cluster, QAT) re-applies all of them after each optimizer step, so a pruned
model stays pruned and a clustered model stays clustered. Parameters are found by name, which
survives torch.export; prepare_qat_pt2e renames them on BatchNorm models, and qat.py moves the
constraints onto the new names (`renamed`).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from condition.techniques import LayerInfo

ATTR = "_condition_constraints"


def weight_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The weights a technique conditions: every parameter named *weight with 2+ dimensions
    (Linear and Conv weights; biases and norms stay as they are)."""
    return {name: p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].endswith("weight") and p.ndim >= 2}


def _layer_kinds(model: nn.Module) -> dict[str, tuple[str, int]]:
    """weight parameter name -> (kind, conv groups): from the modules, or for an exported
    GraphModule (a .pt2, a folded model) from the conv/linear ops that read the weight."""
    kinds: dict[str, tuple[str, int]] = {}
    for name, m in model.named_modules():
        key = f"{name}.weight" if name else "weight"
        if isinstance(m, nn.Linear):
            kinds[key] = ("fc", 1)
        elif isinstance(m, nn.modules.conv._ConvTransposeNd):
            kinds[key] = ("transpose_conv", m.groups)
        elif isinstance(m, nn.modules.conv._ConvNd):
            kinds[key] = ("conv", m.groups)
    if isinstance(model, torch.fx.GraphModule):
        for node in model.graph.nodes:
            if node.op != "call_function" or len(node.args) < 2 or getattr(node.args[1], "op", None) != "get_attr":
                continue
            op = str(node.target)
            if op.startswith("aten.linear"):
                kinds[node.args[1].target] = ("fc", 1)
            elif op.startswith(("aten.conv1d", "aten.conv2d", "aten.conv3d")):  # (x, w, b, stride, padding, dilation, groups)
                kinds[node.args[1].target] = ("conv", int(node.args[6]) if len(node.args) > 6 else 1)
            elif op.startswith("aten.convolution"):  # (x, w, b, stride, padding, dilation, transposed, output_padding, groups)
                kinds[node.args[1].target] = ("transpose_conv" if node.args[6] else "conv", int(node.args[8]))
    return kinds


def layer_infos(model: nn.Module) -> dict[str, LayerInfo]:
    """Every weight of `weight_params` as the prune/cluster policies see it, by parameter name.
    A grouped conv with one input channel per group is `depthwise`; a weight read by no conv or
    linear is `other` (left out, and named so)."""
    kinds = _layer_kinds(model)
    params = weight_params(model)
    infos = {}
    for i, (name, p) in enumerate(params.items()):
        kind, groups = kinds.get(name, ("other", 1))
        if kind == "conv" and groups > 1:
            kind = "depthwise" if p.shape[1] == 1 else "grouped_conv"
        infos[name] = LayerInfo(name.rsplit(".", 1)[0] if "." in name else name, kind, p.numel(), int(p.shape[0]), int(p.shape[1]),
                                last=i == len(params) - 1,  # parameters come in the order the model defines them
                                nonzero=int(torch.count_nonzero(p.detach())))
    return infos


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


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy that keeps the constraints: GraphModule.__deepcopy__ (exported, folded and .pt2
    models) rebuilds the module and drops attributes it does not know."""
    copied = copy.deepcopy(model)
    copy_constraints(model, copied)
    return copied


def renamed(constraint: Constraint, names: dict[str, str]) -> Constraint:
    """The same constraint on parameters renamed by `names` (old -> new), e.g. onto the
    `_param_constantN` weights of a prepare_qat_pt2e graph; names not in `names` are kept."""
    if isinstance(constraint, MaskConstraint):
        return MaskConstraint({names.get(n, n): m for n, m in constraint.masks.items()})
    return ClusterConstraint({names.get(n, n): a for n, a in constraint.assignments.items()}, constraint.clusters)


def apply_all(model: nn.Module, constraints: list[Constraint] | None = None) -> None:
    for c in constraints if constraints is not None else constraints_of(model):
        c.apply(model)


def hook_for(model: nn.Module, constraints: list[Constraint] | None = None):
    """A `train()` after-step hook that re-applies the constraints to `model`."""
    cs = constraints if constraints is not None else constraints_of(model)
    return lambda step, total: apply_all(model, cs)
