"""Framework-free foundation: technique configs, chains, run identity, atomic run folders,
metrics record round trip, and a CLI that starts without tensorflow or torch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from condition.backend.metrics import AccuracyResult, LayerWeights, MetricsRecord, WeightStats, config_hash
from condition.backend.target import Target
from condition.cli.commands.common import build_chain
from condition.errors import ConfigError
from condition.recorder import RunRecorder
from condition.run import RunConfig
from condition.techniques import ClusterConfig, PostTrainingQuantConfig, PruneConfig, Structure, check_chain, config_options, make_config


def test_prune_config_ranges() -> None:
    assert PruneConfig(sparsity=0.0).sparsity == 0.0
    assert PruneConfig(sparsity=0.95, structure="2:4").structure is Structure.TWO_FOUR
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="--sparsity"):
            PruneConfig(sparsity=bad)
    with pytest.raises(ConfigError, match="2:4"):
        PruneConfig(sparsity=0.3, structure="2:4")


def test_cluster_config_ranges() -> None:
    assert ClusterConfig(clusters=2).clusters == 2
    with pytest.raises(ConfigError, match="--clusters"):
        ClusterConfig(clusters=1)
    with pytest.raises(ConfigError, match="--clusters"):
        ClusterConfig(clusters=300)


def _chain(*names: str) -> list:
    return [make_config(n, {}) for n in names]


def test_chain_order_is_collaborative_optimization_order() -> None:
    check_chain(_chain("prune", "cluster", "qat"))
    check_chain(_chain("cluster", "post-training-quant"))
    with pytest.raises(ConfigError, match="did you mean prune → cluster"):
        check_chain(_chain("cluster", "prune"))
    with pytest.raises(ConfigError, match="both quantize"):
        check_chain(_chain("qat", "post-training-quant"))
    with pytest.raises(ConfigError, match="repeats"):
        check_chain(_chain("prune", "prune"))
    with pytest.raises(ConfigError, match="did you mean cluster"):
        make_config("clustr", {})


def test_build_chain_gives_each_step_only_its_options() -> None:
    steps = build_chain("prune", ("cluster", "qat"), {"sparsity": 0.9, "structure": "2:4", "schedule": "constant",
                                                      "clusters": 8, "centroid_init": "linear", "preserve_sparsity": True,
                                                      "fine_tune_epochs": 2, "qat_epochs": 3, "calibration_images": 50})
    assert [s.name for s in steps] == ["prune", "cluster", "qat"]
    assert config_options(steps[0]) == {"sparsity": 0.9, "structure": "2:4", "schedule": "constant", "fine_tune_epochs": 2,
                                        "scope": "layer"}
    assert steps[1].clusters == 8 and steps[1].centroid_init.value == "linear"
    assert config_options(steps[2]) == {"fine_tune_epochs": 3, "preserve": True}


def test_run_dir_is_keyed_by_full_configuration(tmp_path: Path) -> None:
    a = RunConfig("tf", (PruneConfig(sparsity=0.9),), out=tmp_path)
    b = RunConfig("tf", (PruneConfig(sparsity=0.8),), out=tmp_path)
    c = RunConfig("tf", (PruneConfig(sparsity=0.9),), out=tmp_path, target=Target.default_for("ethos-u55-128"))
    assert a.run_dir().parent == tmp_path / "tf" / "mlp"
    assert a.run_dir().name.startswith("prune-")
    assert len({a.hash, b.hash, c.hash}) == 3
    assert a.hash == RunConfig("tf", (PruneConfig(sparsity=0.9),), out=tmp_path).hash
    assert config_hash({"a": 1, "b": 2}) == config_hash({"b": 2, "a": 1})


def test_run_identity_holds_the_versions_that_change_results(tmp_path: Path, monkeypatch) -> None:
    """Vela 5.1.0 and 5.2.0 give the same DS-CNN .pte 24 % apart on U55: a run under another Vela is another run."""
    from importlib import metadata

    import condition.run as run

    tf, torch = RunConfig("tf", (PruneConfig(sparsity=0.9),), out=tmp_path), RunConfig("torch", (PruneConfig(sparsity=0.9),), out=tmp_path)
    assert tf.identity()["tools"]["ethos-u-vela"] == metadata.version("ethos-u-vela") == torch.identity()["tools"]["ethos-u-vela"]
    assert "tensorflow" in tf.identity()["tools"] and "executorch" in torch.identity()["tools"]
    before = tf.hash
    monkeypatch.setattr(run, "installed_version", lambda dist: "5.1.0" if dist == "ethos-u-vela" else metadata.version(dist))
    assert tf.identity()["tools"]["ethos-u-vela"] == "5.1.0" and tf.hash != before


def test_recorder_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    config = RunConfig("torch", (PostTrainingQuantConfig(),), out=tmp_path)
    with pytest.raises(RuntimeError):
        with RunRecorder(config) as rec:
            rec.path("half.bin").write_bytes(b"x")
            raise RuntimeError("boom")
    assert not config.run_dir().exists()
    assert list(tmp_path.iterdir()) == []  # not even the empty <frontend>/<model> folders


def test_recorder_moves_finished_run_into_place(tmp_path: Path) -> None:
    config = RunConfig("tf", (PostTrainingQuantConfig(),), out=tmp_path)
    for payload in (b"first", b"second"):  # a re-run replaces the old folder whole
        with RunRecorder(config) as rec:
            with rec.step("export"):
                rec.path("model.tflite").write_bytes(payload)
            record = rec.finish(artifacts=[rec.artifact("tflite", rec.path("model.tflite"))])
    run_dir = config.run_dir()
    assert (run_dir / "model.tflite").read_bytes() == b"second"
    assert record.artifacts[0].bytes == len(b"second") and record.artifacts[0].path == "model.tflite"
    assert "export" in record.step_seconds and "total" in record.step_seconds
    assert sorted(p.name for p in run_dir.parent.iterdir()) == [run_dir.name]


def test_metrics_record_round_trip_and_schema_check(tmp_path: Path) -> None:
    rec = MetricsRecord("tf", ["prune", "cluster"], {"prune": {"sparsity": 0.95}}, "mlp", "fashion-mnist",
                        Target(), 0, 1,
                        accuracy=[AccuracyResult("int8", 0.85, "tflite-interpreter int8", 10000)],
                        weights=WeightStats([LayerWeights("fc1", [512, 784], 401408, 381337, 16)]))
    path = rec.write(tmp_path)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1 and data["weights"]["sparsity"] == pytest.approx(0.95, abs=0.001)
    assert MetricsRecord.read(tmp_path) == rec
    data["schema_version"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(Exception, match="schema_version"):
        MetricsRecord.read(path)


def test_cli_help_does_not_import_frameworks() -> None:
    code = ("import sys; from condition.cli import main; rc = main(['--help']); "
            "print('LOADED', [m for m in ('tensorflow', 'torch', 'executorch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "Usage: condition" in out.stdout
    assert "LOADED []" in out.stdout
