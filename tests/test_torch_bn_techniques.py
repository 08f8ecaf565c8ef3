"""Prune, cluster and their chains on a BatchNorm CNN (conv stem, depthwise, residual Add, 1x1
convs, fc) with the torch frontend, counted on the int8 tensors of the converted PT2E graph (what
the .pte's delegate is compiled from). Random images: these check where zeros and shared values
end up, not accuracy."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from condition.backend.target import Target  # noqa: E402
from condition.datasets import Dataset  # noqa: E402
from condition.frontend import StepContext  # noqa: E402
from condition.frontends.torch import REGISTRY  # noqa: E402
from condition.frontends.torch import frontend  # noqa: E402,F401  (registers the techniques)
from condition.frontends.torch.weights import int8_weight_stats  # noqa: E402
from condition.pruning import kept_count  # noqa: E402
from condition.techniques import ClusterConfig, PostTrainingQuantConfig, PruneConfig, QatConfig  # noqa: E402

from bn_cnn_checks import LAYERS, check_cluster, check_prune_scope, check_two_four  # noqa: E402


@pytest.fixture(scope="module")
def data() -> Dataset:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (256, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 256)
    return Dataset("random", x, y, x[:32], y[:32])


def _chain(data: Dataset, *steps, notes: list[str] | None = None):
    """The steps applied in order, as the pipeline does; then int8 (PTQ) unless the chain quantized."""
    from torch_test_models import bn_cnn

    model, done = bn_cnn(), ()
    if not any(s.quantizes for s in steps):
        steps = (*steps, PostTrainingQuantConfig(calibration_images=32))
    for step in steps:
        model = REGISTRY.apply(model, step, StepContext(data, Target(), 0, done, note=(notes if notes is not None else []).append))
        done = (*done, step)
    return {layer.name: layer for layer in int8_weight_stats(model, done).layers}


def test_cluster_holds_k_values_per_tensor_after_batchnorm_folding(data):
    notes = []
    layers = _chain(data, ClusterConfig(clusters=8), notes=notes)
    assert list(layers) == LAYERS
    check_cluster(layers, notes)


@pytest.mark.parametrize("scope", ["layer", "global"])
def test_prune_scope_policy_and_per_layer_sparsity(data, scope):
    notes = []
    layers = _chain(data, PruneConfig(0.9, scope=scope, fine_tune_epochs=1), notes=notes)
    check_prune_scope(layers, notes, scope)


@pytest.mark.parametrize("schedule", ["constant", "polynomial"])
def test_prune_keeps_a_weight_in_every_output_channel(data, schedule):
    """Quiet output channels (the head's first 8 scaled by 1e-3) are emptied by one |w| ranking over
    the layer (the polynomial ramp, as tfmot's); pruned at once each channel keeps its largest
    weight (the same as tf: condition.pruning.layer_mask) and the layer stays at the request."""
    from torch_test_models import bn_cnn

    model = bn_cnn()
    with torch.no_grad():
        model.head.weight[:8] *= 1e-3
    pruned = REGISTRY.apply(model, PruneConfig(0.9, schedule=schedule, fine_tune_epochs=1), StepContext(data, Target(), 0, ()))
    head = pruned.head.weight.detach().flatten(1)  # (64 outputs, 32 inputs)
    assert int((head == 0).sum()) == head.numel() - kept_count(head.numel(), 0.9)
    kept = (head != 0).sum(dim=1)
    if schedule == "constant":
        assert bool((kept >= 1).all()) and bool((kept[:8] == 1).all()), kept
    else:
        assert bool((kept[:8] == 0).all()), kept


def test_two_four_layers_carry_the_pattern_and_depthwise_does_not(data):
    layers = _chain(data, PruneConfig(0.5, structure="2:4", fine_tune_epochs=1))
    check_two_four(layers)


def test_prune_then_qat_on_batchnorm_keeps_the_masks(data):
    """prepare_qat_pt2e renames every weight of a conv-BN graph: the masks must follow them."""
    layers = _chain(data, PruneConfig(0.8, fine_tune_epochs=1), QatConfig())
    for n in ("pw", "head"):
        assert layers[n].sparsity >= 0.79, n
    assert layers["pw"].unique_axis == "channel"  # no clustering: per-channel scales as usual


def test_batchnorm_chain_prune_cluster_qat_keeps_zeros_and_shared_values(data):
    layers = _chain(data, PruneConfig(0.8, fine_tune_epochs=1), ClusterConfig(clusters=8), QatConfig())
    for n, layer in layers.items():
        assert layer.unique_values <= 8 and layer.unique_axis == "tensor", layer
        assert "cluster" in layer.conditioned
    for n in ("pw", "head"):
        assert layers[n].conditioned == ["prune", "cluster"] and layers[n].sparsity >= 0.79, n
    assert layers["fc"].conditioned == ["cluster"]


# ---- QAT on the built-in DS-CNN: BatchNorm folded at convert, every op delegated ----------------

@pytest.mark.slow  # about 15 s: one QAT of DS-CNN and two lowerings (frontends/torch/pattern_cache.py keeps it from a minute)
def test_qat_on_ds_cnn_folds_batchnorm_keeps_the_zeros_and_lowers_every_op_to_the_npu(data):
    """prepare_qat_pt2e simulates the conv-BN fold and convert must fold it for real. It did not on
    DS-CNN (the quantizer annotated each conv apart from its BatchNorm): 54 ops stayed on the CPU.
    Pruned first, so the masks must survive QAT's renamed weights too. One QAT (its prepare and
    convert cost most of the time), lowered for U85 and U55; untrained: placement, not accuracy."""
    import tempfile
    from pathlib import Path

    from condition.frontends.torch.export import example_input, lower
    from condition.frontends.torch.models import build_model
    from condition.models import ModelSpec

    model, done = build_model(ModelSpec("builtin", "ds-cnn"), data.input_shape, 10, seed=0), ()
    for step in (PruneConfig(0.8, fine_tune_epochs=1), QatConfig()):
        model = REGISTRY.apply(model, step, StepContext(data, Target(), 0, done))
        done = (*done, step)
    assert not [n for n in model.graph.nodes if "batch_norm" in str(n.target)]
    for accelerator in ("ethos-u85-128", "ethos-u55-128"):
        with tempfile.TemporaryDirectory() as out:
            placement = lower(model, example_input((1, 28, 28)), Target.default_for(accelerator), Path(out)).placement
        assert placement.cpu_ops == [] and placement.delegates == 1 and placement.ops_on_npu > 0, accelerator
    layers = {layer.name: layer for layer in int8_weight_stats(model, done).layers}
    assert list(layers)[-1] == "fc" and "prune" in layers["fc"].left_out  # the classifier is still the last layer
    pruned = [name for name, layer in layers.items() if layer.conditioned == ["prune"]]
    assert "block4_pw" in pruned and all(layers[n].sparsity >= 0.79 for n in pruned), pruned
