"""`condition search`: the space per NPU, the seed points and what --help says about them. Fast:
no Ray, no training."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from condition.backend.target import Target
from condition.cli import cli
from condition.compare.search import STARTUP_TRIALS
from condition.compare.search_space import (SEED_POINTS, SPACES, define_space, in_space, normalise, seed_baseline_config,
                                            space_for, total_epochs)
from condition.run import RunConfig


def test_u85_searches_2_4_and_the_others_unstructured():
    assert space_for(Target.default_for("ethos-u85-128")) == "2:4"
    assert space_for(Target.default_for("ethos-u85-2048")) == "2:4"
    assert space_for(Target.default_for("ethos-u55-128")) == "unstructured"
    assert space_for(Target.default_for("ethos-u65-256")) == "unstructured"


@pytest.mark.parametrize("space", list(SPACES))
def test_seed_points_lie_in_their_space_and_fill_the_start_up_phase(space):
    points = [normalise(p) for p in SEED_POINTS[space]]
    assert len(points) == STARTUP_TRIALS == len({str(p) for p in points})
    assert all(in_space(p, space) for p in points)
    assert {p["structure"] for p in points} == {space}
    # the seed baseline is the longest seed's: every other seed's baseline loads its float model from the float cache
    base = RunConfig(frontend="tf", chain=())
    assert seed_baseline_config(space, base).epochs == max(total_epochs(p, 1) for p in points) == 8
    assert not in_space(normalise(dict(points[0], structure="2:4" if space == "unstructured" else "unstructured")), space)


@pytest.mark.parametrize("space", list(SPACES))
def test_define_by_run_space_stays_in_its_space(space):
    import optuna

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=2))
    for _ in range(20):
        trial = study.ask()
        define_space(trial, space)
        assert in_space(normalise(trial.params), space), trial.params
        study.tell(trial, [1.0, 1.0])


def test_help_states_the_space_and_the_seed_points():
    text = " ".join(CliRunner().invoke(cli, ["search", "--help"]).output.split())
    for space in SPACES.values():
        _, low, high, _ = space["sparsity"]
        assert f"sparsity {low:.2f}-{high:.2f}" in text
    _, low, high = SPACES["2:4"]["fine_tune_epochs"]
    assert f"fine-tuning epochs {low}-{high}" in text
    clusters = [c for c in SPACES["2:4"]["clusters"][1] if c]
    assert "clusters none, " + ", ".join(map(str, clusters[:-1])) + f" or {clusters[-1]}" in text
    seeds, other = SEED_POINTS["2:4"], SEED_POINTS["unstructured"][2]
    assert (f"sparsity {seeds[0]['sparsity']} with {seeds[0]['clusters']} clusters, {seeds[1]['sparsity']} with "
            f"{seeds[1]['clusters']} ({seeds[0]['fine_tune_epochs']} fine-tuning epochs, {seeds[0]['qat_epochs']} QAT "
            f"epoch), then channel-prune {seeds[2]['channel_sparsity']} → {seeds[2]['sparsity']} with "
            f"{seeds[2]['clusters']} clusters → {seeds[2]['quantize']} on U85 ({other['channel_sparsity']} → "
            f"{other['sparsity']} with {other['clusters']} clusters → {other['qat_epochs']} QAT epoch on U55/U65; "
            f"{seeds[2]['fine_tune_epochs']} fine-tuning epochs each)") in text
    shares = [c for c in SPACES["2:4"]["channel_sparsity"][1] if c]
    assert "channel-prune first: none, or " + ", ".join(f"{c:g}" for c in shares[:-1]) + f" or {shares[-1]:g}" in text
    assert f"TPE proposes from the {STARTUP_TRIALS + 1}th trial on" in text
