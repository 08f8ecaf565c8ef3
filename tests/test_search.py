"""`condition search`: the space and its command lines (fast, no Ray), the early-stop rule, and a
4-trial search on tiny data on both frontends, re-rendered by `condition report` and resumed
without redoing a trial."""
from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path

import pytest

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.cli import cli, main
from condition.cli.commands.common import build_run_config
from condition.compare.search import SearchSpec, TrialOutcome, best_by_frontend, hopeless, previous_trials, write_manifest
from condition.compare.search_space import (SEED_POINT, baseline_config, chain_steps, command_line, define_space, normalise,
                                            reference_config, total_epochs, trial_config)
from condition.errors import ConfigError
from condition.run import RunConfig

from conftest import needs_fashion_mnist  # noqa: E402

pytestmark = needs_fashion_mnist

PARAMS = [
    SEED_POINT,
    {"structure": "unstructured", "sparsity": 0.871, "schedule": "polynomial", "fine_tune_epochs": 1, "clusters": 0,
     "quantize": "post-training-quant"},
    {"structure": "2:4", "sparsity": 0.5, "schedule": "constant", "fine_tune_epochs": 2, "clusters": 32, "quantize": "qat",
     "qat_epochs": 2},
    {"channel_sparsity": 0.75, "structure": "unstructured", "sparsity": 0.9, "schedule": "constant", "fine_tune_epochs": 2,
     "clusters": 8, "quantize": "qat", "qat_epochs": 1},
]


def base(frontend: str = "tf", out: Path = Path("/tmp/unused")) -> RunConfig:
    return reference_config(RunConfig(frontend=frontend, chain=(), out=out, train_limit=300, eval_limit=100))


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("frontend", ["tf", "torch"])
def test_the_command_line_reproduces_the_trial(frontend, params):
    """What the report prints is a `condition <frontend> prune …` (or `channel-prune … --then prune …`) run with the
    trial's very hash."""
    config = trial_config(params, base(frontend))
    argv = shlex.split(command_line(params, base(frontend)))
    first = "channel-prune" if params.get("channel_sparsity") else "prune"
    assert argv[:3] == ["condition", frontend, first]
    command = cli.get_command(None, frontend).get_command(None, first)
    ctx = command.make_context(first, argv[3:])
    opts = {**ctx.params, "out": "/tmp/unused"}
    assert build_run_config(frontend, first, opts).hash == config.hash


def test_chains_follow_the_collaborative_order_and_epochs_add_up():
    assert [t for t, _ in chain_steps(SEED_POINT)] == ["prune", "cluster", "qat"]
    assert [t for t, _ in chain_steps(PARAMS[3])] == ["channel-prune", "prune", "cluster", "qat"]
    assert total_epochs(PARAMS[3], 1) == 1 + 2 + 2 + 2 + 1
    assert [t for t, _ in chain_steps(PARAMS[1])] == ["prune", "post-training-quant"]
    assert total_epochs(SEED_POINT, 1) == 1 + 3 + 3 + 1  # float + prune + cluster fine-tuning + QAT
    assert total_epochs(PARAMS[1], 2) == 3
    b = baseline_config(SEED_POINT, base())
    assert b.techniques == ["post-training-quant"] and b.epochs == 8 and b.hash != reference_config(base()).hash
    assert normalise(PARAMS[1])["sparsity"] == 0.87 and "qat_epochs" not in normalise(PARAMS[1])


def test_define_by_run_space_asks_qat_epochs_only_for_qat():
    import optuna

    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        define_space(trial)
        assert ("qat_epochs" in trial.params) == (trial.params["quantize"] == "qat")
        seen.add(trial.params["quantize"])
        study.tell(trial, [1.0, 1.0])
    assert seen == {"qat", "post-training-quant"}


def outcome(params: dict, accuracy: float, required: float = 0.85, frontend: str = "tf", **kw) -> TrialOutcome:
    return TrialOutcome(frontend, normalise(params), "ok", accuracy=accuracy, baseline_accuracy=required + 0.01,
                        required_accuracy=required, cycles=kw.get("cycles", 24000), weights=kw.get("weights", 30000),
                        baseline_cycles=160000, baseline_weights=500000)


def test_a_trial_is_stopped_only_when_a_gentler_one_already_missed_by_more_than_the_margin():
    gentle = dict(SEED_POINT, sparsity=0.9, clusters=16)
    missed = outcome(gentle, accuracy=0.80)
    harsher = normalise(dict(SEED_POINT, sparsity=0.95, clusters=8))
    assert hopeless(harsher, "tf", 0.85, [missed]) == missed
    assert hopeless(harsher, "torch", 0.85, [missed]) is None  # other frontend
    assert hopeless(harsher, "tf", 0.805, [missed]) is None  # within the margin: run it
    assert hopeless(normalise(dict(harsher, fine_tune_epochs=3, sparsity=0.85)), "tf", 0.85, [missed]) is None  # gentler
    assert hopeless(normalise(dict(harsher, structure="unstructured")), "tf", 0.85, [missed]) is None
    assert hopeless(normalise(dict(harsher, clusters=0)), "tf", 0.85, [missed]) is None  # no clustering is gentler
    assert hopeless(normalise(dict(harsher, qat_epochs=2)), "tf", 0.85, [missed]) is None  # more QAT epochs


def test_feasibility_constraint_and_best_model():
    good = outcome(SEED_POINT, accuracy=0.86, weights=25000)
    small_but_bad = outcome(PARAMS[2], accuracy=0.80, weights=20000)
    stopped = dataclasses.replace(good, params=normalise(PARAMS[1]), status="stopped", accuracy=None)
    assert good.feasible and good.constraint < 0
    assert not small_but_bad.feasible and small_but_bad.constraint == pytest.approx(0.05)
    assert not stopped.feasible and stopped.constraint == 1.0
    assert best_by_frontend([small_but_bad, good, stopped]) == {"tf": good}


def test_resuming_into_a_folder_of_another_search_is_refused(tmp_path):
    spec = SearchSpec((base("tf", tmp_path),), trials=2)
    write_manifest(spec, [outcome(SEED_POINT, 0.86)], {})
    assert len(previous_trials(spec)) == 1
    stricter = dataclasses.replace(spec, max_accuracy_drop=0.5)
    assert previous_trials(stricter)[0].required_accuracy == pytest.approx(0.86 - 0.005)  # re-judged with the new drop
    other = SearchSpec((dataclasses.replace(base("tf", tmp_path), epochs=3),), trials=2)
    with pytest.raises(ConfigError, match="other settings"):
        previous_trials(other)


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_a_search_on_both_frontends_on_tiny_data_then_report_then_resume(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Path("search")  # relative, as a user types it: trials run in Tune's own working folders
    args = ["search", "--frontend", "both", "--trials", "1", "--train-limit", "300", "--eval-limit", "100", "--out", str(out)]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "2 trials, 0 done before" in first.err
    assert first.err.count("[") >= 2 and "[2/2]" in first.err
    data = json.loads((out / "search.json").read_text())
    trials = data["trials"]
    assert len(trials) == 2 and sorted(t["frontend"] for t in trials) == ["tf", "torch"]
    ran = [t for t in trials if t["status"] == "ok"]
    assert ran, trials
    for t in ran:
        record = MetricsRecord.read(out / t["run_dir"] / RECORD_NAME)
        assert record.status == "ok" and record.config_hash == t["config_hash"] and record.techniques[0] == "prune"
        assert t["weights"] == record.vela.encoded_weight_bytes and t["cycles"] == record.vela.total_cycles
        baseline = MetricsRecord.read(out / t["baseline_dir"] / RECORD_NAME)
        assert baseline.techniques == ["post-training-quant"] and baseline.epochs == total_epochs(t["params"], 1)
        assert t["baseline_accuracy"] == baseline.accuracy_of("int8").value
    for name in ("search.md", "search.html", "plots/search-pareto.svg"):
        assert (out / name).is_file(), name
    assert "tf: 1 trial (" in first.out and "torch: 1 trial (" in first.out
    assert not list(Path(out).rglob(".*partial*"))

    report = (out / "search.md").read_text()
    assert main(["report", str(out)]) == 0
    assert (out / "search.md").read_text() == report
    capsys.readouterr()

    stamps = {t["run_dir"]: (out / t["run_dir"] / RECORD_NAME).stat().st_mtime_ns for t in ran}
    assert main(args) == 0
    again = capsys.readouterr()
    assert "2 trials, 2 done before" in again.err and "/2]" not in again.err
    assert {k: (out / k / RECORD_NAME).stat().st_mtime_ns for k in stamps} == stamps
