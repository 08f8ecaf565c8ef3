"""Results that cannot be right are flagged, never reported as figures: the checks on their own, and
an untrained built-in model through the real CLI (chance accuracy → exit 3, record kept and flagged,
and a compare report that shows the problem instead of the row)."""
from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from condition.backend.metrics import AccuracyResult, LayerWeights, MetricsRecord, WeightStats
from condition.backend.plausibility import problems
from condition.cli.main import cli


def acc(value: float, kind: str = "int8") -> AccuracyResult:
    return AccuracyResult(kind=kind, value=value, evaluator="test", images=1000)


def layer(name: str, zeros: int, unique: int, conditioned: list[str], params: int = 64) -> LayerWeights:
    return LayerWeights(name=name, shape=[8, 8], params=params, zeros=zeros, unique_values=unique, conditioned=conditioned,
                        unique_axis="channel")


def test_sound_figures_have_no_problem():
    weights = WeightStats([layer("conv", 48, 16, ["prune", "cluster"]), layer("fc", 0, 200, [])])
    assert problems([acc(0.85, "float"), acc(0.84)], weights, [], {"prune": {}, "cluster": {"clusters": 16}}, 10) == []


def test_near_chance_accuracy_is_flagged_per_kind():
    found = problems([acc(0.85, "float"), acc(0.105)], None, [], {}, 10)
    assert len(found) == 1 and "int8 accuracy 0.105 is near chance (0.100 for 10 classes)" in found[0]
    assert problems([acc(0.15)], None, [], {}, 10) == []  # 5 % of the way from chance to 1 is 0.145
    assert problems([acc(0.60)], None, [], {}, 2) == []  # 2 classes: chance 0.5, near chance up to 0.525
    assert problems([acc(0.52)], None, [], {}, 2)


def test_an_emptied_layer_is_flagged_once_over_stages():
    emptied = WeightStats([layer("block1_pw", 64, 1, ["prune"]), layer("fc", 3, 100, [])])
    found = problems([acc(0.8)], emptied, [WeightStats(emptied.layers, stage="prune")], {"prune": {}}, 10)
    assert found == ["layer block1_pw has every weight zero (64 of 64): pruning emptied it"]


def test_clustering_that_did_not_survive_export_is_flagged():
    weights = WeightStats([layer("conv", 0, 207, ["cluster"]), layer("stem", 0, 180, [])])  # stem left out: not checked
    found = problems([acc(0.8)], weights, [], {"cluster": {"clusters": 16}}, 10)
    assert found == ["clustered layer conv holds 207 distinct values per channel after export (clusters 16): "
                     "clustering did not survive"]
    kept_zero = WeightStats([layer("conv", 30, 17, ["prune", "cluster"])])  # zero beside 16 when sparsity is preserved
    assert problems([acc(0.8)], kept_zero, [], {"cluster": {"clusters": 16, "preserve_sparsity": True}}, 10) == []
    assert problems([acc(0.8)], kept_zero, [], {"cluster": {"clusters": 16, "preserve_sparsity": False}}, 10)


def test_an_untrained_model_is_flagged_by_the_cli_and_in_compare(tmp_path: Path):
    out = tmp_path / "runs"
    args = ["tf", "post-training-quant", "--epochs", "0", "--train-limit", "64", "--eval-limit", "300", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 3, result.output
    assert "result flagged: int8 accuracy" in result.output and "near chance" in result.output
    record = MetricsRecord.read(next(out.rglob("metrics.json")))
    assert record.status == "ok" and any("near chance" in p for p in record.problems)

    report = CliRunner().invoke(cli, ["report", str(out)])
    assert report.exit_code == 0, report.output
    md = (out / "report.md").read_text()
    assert "## Failed and flagged cells" in md and "| flagged: float accuracy" in md and "int8 accuracy" in md
    assert json.loads((out / "results.json").read_text())  # the report still writes its files
