"""The checks tests/test_tf_bn_techniques.py and tests/test_torch_bn_techniques.py share: both
frontends condition the same BatchNorm CNN and must condition, leave out and count the same layers.
`layers` maps each name of LAYERS to its LayerWeights; `notes` are the run's record notes."""
import pytest

LAYERS = ["stem", "dw", "pw", "head", "fc"]  # the exported weighted ops, in execution order


def check_cluster(layers, notes) -> None:
    """ClusterConfig(clusters=8): every layer, BatchNorm folded first, at most 8 values per tensor."""
    assert [layers[n].kind for n in LAYERS] == ["conv", "depthwise", "conv", "conv", "fc"]
    for layer in layers.values():  # conv, depthwise and fc alike, on the exported int8 tensors
        assert layer.conditioned == ["cluster"] and layer.unique_axis == "tensor" and layer.unique_values <= 8, layer
    assert any(n.startswith("BatchNorm folded into the conv before it (stem, dw, pw, head)") for n in notes)
    assert "cluster 8: 5 of 5 layers" in notes


def check_prune_scope(layers, notes, scope: str) -> None:
    """PruneConfig(0.9, scope=scope): the policy leaves out the stem, the depthwise conv and the classifier."""
    pruned = [n for n in LAYERS if layers[n].conditioned == ["prune"]]
    assert pruned == ["pw", "head"]
    assert layers["stem"].left_out == {"prune": "image stem (1 input channels)"}
    assert layers["dw"].left_out == {"prune": "depthwise"}
    assert layers["fc"].left_out == {"prune": "the classifier (last weighted layer)"}
    assert layers["stem"].sparsity < 0.1 and layers["dw"].sparsity < 0.1 and layers["fc"].sparsity < 0.1
    zeros = sum(layers[n].zeros for n in pruned) / sum(layers[n].params for n in pruned)
    assert zeros == pytest.approx(0.9, abs=0.01)  # over the pruned layers, on the int8 tensors
    if scope == "layer":  # each pruned layer at the request, none emptied
        for n in pruned:
            assert layers[n].sparsity == pytest.approx(0.9, abs=0.01), n
    assert any(n.startswith(f"prune 90 %{' global' if scope == 'global' else ''}: 2 of 5 layers; left out: stem") for n in notes)


def check_two_four(layers) -> None:
    """PruneConfig(0.5, structure="2:4"): the 1x1 convs carry the pattern; the stem (1 input channel),
    the depthwise conv and the classifier do not."""
    assert {n: layers[n].two_four for n in LAYERS} == {"stem": False, "dw": False, "pw": True, "head": True, "fc": False}
    assert layers["stem"].left_out == {"prune": "1 input channels, not a multiple of 4"}
    for n in ("pw", "head"):
        assert layers[n].sparsity == pytest.approx(0.5, abs=0.01)
