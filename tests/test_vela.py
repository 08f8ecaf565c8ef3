"""Vela CSV parsing against outputs recorded from a real Vela 5.1 run (tests/data/vela_u85_tiny:
a 784-32-L2Norm-10 int8 model on U85-128, whose L2Norm Vela leaves on the CPU), and a real
in-process compile of a tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from condition.backend.artifact_memory import vela_tflite_memory
from condition.backend.target import Target
from condition.backend.tflite_file import read_tflite
from condition.backend.vela import compile_tflite, estimate_from_csvs, find_vela_csvs, parse_per_layer_csv
from condition.errors import ArtifactError, StepError

DATA = Path(__file__).parent / "data" / "vela_u85_tiny"


def test_summary_csv_fields() -> None:
    summary, per_layer = find_vela_csvs(DATA)
    assert summary.name == "tiny_cpu_op_summary_Ethos_U85_SYS_DRAM_Mid.csv"
    assert per_layer is not None and per_layer.name == "tiny_cpu_op_per-layer.csv"
    est = estimate_from_csvs(summary, per_layer, ops_on_npu=3, cpu_ops=["L2Norm"])
    assert est.source == "estimate"
    assert (est.accelerator, est.system_config, est.memory_mode) == ("ethos-u85-128", "Ethos_U85_SYS_DRAM_Mid", "Shared_Sram")
    assert est.original_weight_bytes == 25408 and est.encoded_weight_bytes == 27120
    assert est.npu_cycles == 2685 and est.total_cycles == 8524
    assert est.sram_bytes == 984 and est.dram_bytes == 27600
    assert est.on_chip_flash_bytes == 0 and est.off_chip_flash_bytes == 0
    assert est.macs == 25408 and est.weights_storage_area == "DRAM"
    assert est.inference_ms == pytest.approx(8524 / 1e9 * 1000)  # cycles / core clock
    assert (est.ops_on_npu, est.ops_on_cpu, est.cpu_ops) == (3, 1, ["L2Norm"])


def test_per_layer_csv_rows() -> None:
    layers = parse_per_layer_csv(DATA / "tiny_cpu_op_per-layer.csv")
    assert [(l.operator, l.target) for l in layers] == [
        ("FullyConnected", "NPU"), ("Relu", "NPU"), ("Passthrough", "CPU"), ("FullyConnected", "NPU")]
    fc = layers[0]
    assert (fc.op_cycles, fc.npu_cycles, fc.macs) == (8134, 2359, 25088)
    assert fc.mac_utilisation_pct == pytest.approx(2.4096, abs=1e-3)
    assert sum(l.macs for l in layers) == 25408  # the summary's nn_macs


def test_missing_csvs_are_a_step_error(tmp_path) -> None:
    with pytest.raises(StepError, match="no Vela summary CSV"):
        find_vela_csvs(tmp_path)


def test_garbage_is_not_a_flatbuffer(tmp_path) -> None:
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"\x00" * 3 + b"garbage" * 10)
    with pytest.raises(ArtifactError, match="TFLite flatbuffer"):
        read_tflite(bad)


@pytest.fixture(scope="module")
def tiny_int8_tflite(tmp_path_factory) -> Path:
    import condition.frontends.tf  # noqa: F401  (legacy Keras before tensorflow loads)
    from condition.frontends.tf import keras_modules
    from condition.frontends.tf.export import to_int8_tflite

    _, keras, _ = keras_modules()
    keras.utils.set_random_seed(0)
    L = keras.layers
    model = keras.Sequential([L.InputLayer((8, 8)), L.Flatten(), L.Dense(16, activation="relu"), L.Dense(4)])
    calib = np.random.default_rng(0).random((16, 8, 8)).astype(np.float32)
    return to_int8_tflite(model, calib, tmp_path_factory.mktemp("vela") / "tiny.tflite")


@pytest.mark.parametrize("npu", ["ethos-u85-128", "ethos-u55-128", "ethos-u65-256"])
def test_real_compile(tiny_int8_tflite, tmp_path, npu) -> None:
    target = Target.default_for(npu)
    result = compile_tflite(tiny_int8_tflite, target, tmp_path / "out")
    est = result.estimate
    assert result.vela_tflite.is_file() and result.summary_csv.is_file() and result.log_path.is_file()
    assert est.accelerator == npu and est.system_config == target.system_config
    assert est.original_weight_bytes == 64 * 16 + 16 * 4  # int8 weights of both layers
    assert est.encoded_weight_bytes > 0 and est.total_cycles >= est.npu_cycles > 0
    assert est.ops_on_cpu == 0 and est.macs == 64 * 16 + 16 * 4
    memory = vela_tflite_memory(result.vela_tflite)  # the arena Vela wrote into the .tflite is the SRAM (or cache) it planned
    assert memory.source == "file" and memory.planned_bytes >= memory.scratch_bytes + memory.fast_scratch_bytes + 64
    if target.memory_mode == "Shared_Sram":
        assert memory.scratch_bytes == est.sram_used_bytes and est.feature_map_storage_area == "SRAM"
    else:  # U65 Dedicated_Sram_384KB: the arena in DRAM, cached in SRAM
        assert est.arena_cache_bytes == 384 * 1024 and est.feature_map_storage_area == "DRAM"
    assert read_tflite(tiny_int8_tflite).operator_names == ["Reshape", "FullyConnected", "FullyConnected"]
    assert read_tflite(result.vela_tflite).operator_names == ["ethos-u"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # Vela's temporary folder (beside out/) removed


def test_vela_failure_is_a_step_error(tiny_int8_tflite, tmp_path) -> None:
    ini = tmp_path / "empty.ini"
    ini.write_text("; defines nothing\n")
    target = Target.default_for("ethos-u85-128", system_config="Nope", vela_config=str(ini))
    with pytest.raises(StepError, match="vela failed"):
        compile_tflite(tiny_int8_tflite, target, tmp_path / "out")


def test_over_a_limit_is_flagged_exit_3(tiny_int8_tflite, tmp_path, capsys) -> None:
    from condition.cli import main

    args = ["measure", str(tiny_int8_tflite), "--out", str(tmp_path), "--json"]
    assert main(args + ["--sram-limit", "1MiB"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["limits"] == {"sram_limit_bytes": 1048576} and record["problems"] == []
    assert record["memory"]["artifact"] == "vela_tflite" and record["vela"]["sram_used_bytes"] > 64
    assert main(args + ["--sram-limit", "64", "--flash-limit", "1KB"]) == 3
    captured = capsys.readouterr()
    flagged = [l for l in captured.err.splitlines() if l.startswith("condition: result flagged: does not fit: ")]
    assert [l.split("does not fit: ")[1].split()[0] for l in flagged] == ["SRAM", "flash"], captured.err
    assert json.loads(captured.out)["problems"] and "Traceback" not in captured.err
