"""Fast checks of the torch frontend's pieces: compile spec, masks, clustering, weight stats."""
import pytest

torch = pytest.importorskip("torch")

from condition.backend.target import VELA_BEHAVIOUR_FLAGS, Target, vela_argv, vela_target_flags  # noqa: E402
from condition.frontend import StepContext  # noqa: E402
from condition.frontends.torch import cluster, constraints, prune  # noqa: E402
from condition.frontends.torch.compile_spec import compile_spec_for  # noqa: E402
from condition.techniques import CentroidInit, ClusterConfig, PruneConfig, Scope, Structure  # noqa: E402


@pytest.mark.parametrize("npu,system,memory", [
    ("ethos-u85-128", "Ethos_U85_SYS_DRAM_Mid", "Shared_Sram"),
    ("ethos-u55-128", "Ethos_U55_High_End_Embedded", "Shared_Sram"),
    ("ethos-u65-256", "Ethos_U65_High_End", "Dedicated_Sram_384KB"),
])
def test_compile_spec_is_the_target(tmp_path, npu, system, memory):
    target = Target.default_for(npu)
    spec = compile_spec_for(target, tmp_path / "delegate")
    flags = spec.compiler_flags
    assert spec.target == npu
    assert f"--accelerator-config={npu}" in flags
    assert f"--system-config={system}" in flags
    assert f"--memory-mode={memory}" in flags
    assert "--verbose-performance" in flags  # Vela's per-layer CSV
    assert "--optimise=Performance" in flags  # the same behaviour flag the TF side passes
    assert len([f for f in flags if f.startswith("--system-config")]) == 1
    assert spec._get_intermediate_path() == str(tmp_path / "delegate")
    assert "u55" in str(spec.tosa_spec) if "u55" in npu or "u65" in npu else "cf" in str(spec.tosa_spec)


def test_compile_spec_passes_the_same_vela_flags_as_the_tf_argv(tmp_path):
    ini = tmp_path / "my.ini"
    ini.write_text("[System_Config.Mine]\n")
    for target in (Target.default_for("ethos-u85-256", "Ethos_U85_SYS_Flash_High"),
                   Target.default_for("ethos-u55-64", "Mine", "Shared_Sram", vela_config=str(ini))):
        flags = compile_spec_for(target).compiler_flags
        tf_argv = vela_argv("m.tflite", "out", target)
        for flag in vela_target_flags(target) + list(VELA_BEHAVIOUR_FLAGS):
            assert flags.count(flag) == 1 and flag in tf_argv


def test_global_l1_hits_the_sparsity_across_layers():
    torch.manual_seed(0)
    weights = {"a": torch.randn(64, 32), "b": torch.randn(16, 64) * 3}
    masks = prune.global_l1_masks(weights, 0.9)
    zeros = sum(int((m == 0).sum()) for m in masks.values())
    assert zeros == round(0.9 * (64 * 32 + 16 * 64))
    assert (masks["b"] == 0).float().mean() < (masks["a"] == 0).float().mean()  # global, not per layer
    kept = torch.cat([w[m.bool()] for w, m in zip(weights.values(), masks.values())])
    dropped = torch.cat([w[~m.bool()] for w, m in zip(weights.values(), masks.values())])
    kept_min, dropped_max = float(kept.abs().min()), float(dropped.abs().max())
    assert dropped_max <= kept_min


@pytest.mark.parametrize("scope", list(Scope))
@pytest.mark.parametrize("sparsity", [0.5, 0.8])
def test_two_four_keeps_the_pattern_and_prunes_inside_it(sparsity, scope):
    torch.manual_seed(1)
    weights = {"fc": torch.randn(8, 16), "conv": torch.randn(4, 8, 3, 3)}
    masks = prune.masks_for(weights, sparsity, Structure.TWO_FOUR, scope)
    for m in masks.values():
        groups = m.movedim(1, -1).reshape(-1, 4)
        assert int(groups.sum(1).max()) <= 2
    if scope is Scope.LAYER:  # every layer at the sparsity
        assert all(int((m == 0).sum()) == round(sparsity * m.numel()) for m in masks.values())
    else:  # the sparsity over all layers together
        total = sum(m.numel() for m in masks.values())
        assert sum(int((m == 0).sum()) for m in masks.values()) == round(sparsity * total)


def test_polynomial_schedule_ramps_to_the_target():
    values = [prune.polynomial_sparsity(0.9, s, 100) for s in (0, 25, 50, 100, 150)]
    assert values[0] == 0.0 and values[-2] == values[-1] == 0.9
    assert values == sorted(values)


def _small_data():
    import numpy as np

    from condition.datasets import Dataset

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (256, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, 256)
    return Dataset("random", x, y, x[:64], y[:64])


@pytest.mark.parametrize("init", list(CentroidInit))
def test_cluster_shares_values_keeps_zeros_and_copies(init):
    from torch_test_models import tiny

    data = _small_data()
    model = tiny()
    pruned = prune.apply(model, PruneConfig(0.5, fine_tune_epochs=0), StepContext(data, Target(), seed=0))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    clustered = cluster.apply(pruned, ClusterConfig(clusters=8, centroid_init=init, fine_tune_epochs=1),
                              StepContext(data, Target(), seed=0))
    for name, w in constraints.weight_params(clustered).items():
        zeros_before = constraints.weight_params(pruned)[name] == 0
        assert bool((w[zeros_before] == 0).all())  # preserve_sparsity: zeros stay zero through fine-tuning
        assert torch.unique(w).numel() <= 8
    for n, p in model.named_parameters():  # the caller's model is untouched
        assert torch.equal(p, before[n])


def test_shared_values_are_tfmots_straight_through_clustering():
    """Forward: each weight's nearest centroid (the zero one fixed at 0, masked weights at 0);
    backward: the gradient straight to the latent weight, summed per cluster for the centroid."""
    import numpy as np

    torch.manual_seed(0)
    w = torch.randn(64, 32)
    w[w.abs() < 0.8] = 0  # pruned
    values = cluster.shared_values(w, ClusterConfig(clusters=8), np.random.default_rng(0))
    centroids = (values.centroids * values.keep).detach()
    assert values.zero is not None and centroids[values.zero] == 0 and bool((values.mask[w == 0] == 0).all())
    x = torch.randn(10_000) * 2
    assert torch.equal(values.nearest(x), (x[:, None] - centroids).abs().argmin(1))  # 1-D nearest = argmin
    latent = w.clone().requires_grad_()
    out = values(latent)
    assert torch.unique(out).numel() <= 8 and bool((out[w == 0] == 0).all())
    (out * torch.arange(out.numel()).view_as(out)).sum().backward()
    grad = torch.arange(out.numel(), dtype=torch.float32).view_as(out)
    assert torch.equal(latent.grad, grad * values.mask)  # straight through (masked weights get none)
    index = values.nearest(w * values.mask)
    expected = torch.zeros(8).index_add_(0, index.view(-1), grad.view(-1))
    expected[values.zero] = 0
    assert torch.allclose(values.centroids.grad, expected)
    assignments = values.assignments(w)
    assert bool((assignments[out == 0] == -1).all()) and int(assignments.max()) <= 6


def test_prune_polynomial_ends_at_target_after_fine_tuning():
    from torch_test_models import tiny

    pruned = prune.apply(tiny(), PruneConfig(0.8, schedule="polynomial", fine_tune_epochs=1), StepContext(_small_data(), Target(), seed=0))
    w = constraints.weight_params(pruned)
    assert abs(float((w["fc1.weight"] == 0).float().mean()) - 0.8) < 1e-3
    assert int((w["fc2.weight"] == 0).sum()) == 0  # the classifier is not pruned
