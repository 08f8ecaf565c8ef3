"""Fold each BatchNorm into the convolution right before it (w·γ/√(σ²+ε), β − μ·γ/√(σ²+ε)).

Why before clustering: the int8 export folds BatchNorm anyway, rescaling every output channel, so
k values shared across a tensor would come out as up to k × channels different values. Folded
first, the clustered values are the exported ones, and one scale per tensor keeps them k int8
codes. The tf frontend folds the same pairs with the same formula (frontends/tf/fold.py).

The model is exported (eval mode) and the pairs are folded in the graph with torchao's
`fold_bn_weights_into_conv_node`, the fold PT2E itself applies at quantization, so any
exportable model works (built-ins, `module:factory`, .pt2). Returns a GraphModule.
"""
from __future__ import annotations

import torch
from torch import nn

from condition.frontends.torch import constraints as cons

_BN_OPS = ("aten.batch_norm.default", "aten._native_batch_norm_legit_no_training.default",
           "aten._native_batch_norm_legit.default")


def has_batchnorm(model: nn.Module) -> bool:
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return True
    return isinstance(model, torch.fx.GraphModule) and any(
        n.op == "call_function" and str(n.target) in _BN_OPS for n in model.graph.nodes)


def fold_batchnorm(model: nn.Module, example: tuple[torch.Tensor, ...], name: str) -> tuple[nn.Module, list[str]]:
    """(model with every conv → BatchNorm pair folded, names of the folded convs); the model as
    it was when it has no BatchNorm. A BatchNorm after anything but a convolution whose output
    feeds only that BatchNorm stays as it is. Constraints of earlier steps are carried over
    (a fold scales channels, so zeros stay zero)."""
    from torchao.quantization.pt2e.utils import _is_conv_node, fold_bn_weights_into_conv_node

    from condition.frontends.torch.export import export_for_quantization

    if not has_batchnorm(model):
        return model, []
    graph = export_for_quantization(model, example, name)
    folded = []
    for bn in [n for n in graph.graph.nodes if n.op == "call_function" and str(n.target) in _BN_OPS]:
        conv = bn.args[0]
        if not isinstance(conv, torch.fx.Node) or not _is_conv_node(conv) or len(conv.users) != 1:
            continue
        weight = conv.args[1]
        bias = conv.args[2] if len(conv.args) > 2 else None
        if getattr(weight, "op", None) != "get_attr" or (bias is not None and getattr(bias, "op", None) != "get_attr"):
            continue
        fold_bn_weights_into_conv_node(conv, weight, bias, bn, graph)
        folded.append(str(weight.target).rsplit(".", 1)[0])
    graph.graph.eliminate_dead_code()
    graph.delete_all_unused_submodules()
    graph.recompile()
    used = {n.target for n in graph.graph.nodes if n.op == "get_attr"}
    for attr in [n for n, _ in [*graph.named_parameters(), *graph.named_buffers()] if n not in used]:
        owner, _, leaf = attr.rpartition(".")  # the folded BatchNorms' parameters and statistics
        module = graph.get_submodule(owner) if owner else graph
        delattr(module, leaf)
    cons.copy_constraints(model, graph)
    return graph, folded
