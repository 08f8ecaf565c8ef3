"""`condition fvp parse/import` and `condition doctor` through the real CLI entry point."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from condition.backend.metrics import MetricsRecord
from condition.backend.target import Target
from condition.cli import main

DATA = Path(__file__).parent / "data"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_json_object_exactly(capsys) -> None:
    code, out, err = run(["fvp", "parse", str(DATA / "pmu_executorch_u55.log"), "--json"], capsys)
    assert code == 0, err
    assert json.loads(out) == {
        "pmu_cycle_counter": 2248730,
        "events": {
            "ETHOSU_PMU_AXI0_RD_DATA_BEAT_RECEIVED": 214960,
            "ETHOSU_PMU_AXI1_RD_DATA_BEAT_RECEIVED": 318320,
            "ETHOSU_PMU_AXI0_WR_DATA_BEAT_WRITTEN": 1250,
            "ETHOSU_PMU_NPU_IDLE": 4520,
        },
        "inferences": 10,
        "npu_active_cycles": 2248730,
        "mac_active_cycles": None,
        "weight_decoder_active_cycles": None,
        "ext_read_beats": 318320,
        "ext_write_beats": None,
        "npu_idle_cycles": 4520,
    }


def test_parse_table(capsys) -> None:
    code, out, _ = run(["fvp", "parse", str(DATA / "pmu_executorch_u85.log")], capsys)
    assert code == 0
    assert "weight decoder active cycles" in out and "74,180" in out and "ETHOSU_PMU_MAC_ACTIVE" in out


@pytest.mark.parametrize("name, problem", [("missing.log", "not found"), (None, "no Ethos-U PMU counters")])
def test_parse_bad_input_one_line(tmp_path: Path, capsys, name: str | None, problem: str) -> None:
    path = tmp_path / "missing.log"
    if name is None:
        path = tmp_path / "empty.log"
        path.write_text("Program complete, exiting.\n")
    code, out, err = run(["fvp", "parse", str(path)], capsys)
    assert code != 0 and out == ""
    assert problem in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def make_record(folder: Path) -> Path:
    record = MetricsRecord(frontend="torch", techniques=["prune"], options={}, model="mlp", dataset="fashion-mnist",
                           target=Target(), seed=0, epochs=1, notes=["kept"])
    record.write(folder)
    return folder


def test_import_attaches_counters(tmp_path: Path, capsys) -> None:
    run_dir = make_record(tmp_path / "run")
    code, out, err = run(["fvp", "import", str(DATA / "pmu_executorch_u85.log"), "--record", str(run_dir)], capsys)
    assert code == 0, err
    assert "97,342" in out
    record = MetricsRecord.read(run_dir)
    assert record.fvp is not None and record.fvp.source == "measured"
    assert record.fvp.npu_active_cycles == 97342 and record.fvp.ext_read_beats == 32411
    assert record.fvp.events["ETHOSU_PMU_WD_ACTIVE"] == 74180
    assert record.fvp.platform == "imported log"
    assert record.notes[0] == "kept" and len(record.notes) == 2
    assert not list(run_dir.glob(".*tmp"))  # written atomically, no leftovers
    # importing again replaces the figures and the note
    code, _, _ = run(["fvp", "import", str(DATA / "pmu_mlek_u85.log"), "--record", str(run_dir / "metrics.json"),
                      "--platform", "FVP_Corstone_SSE-320"], capsys)
    record = MetricsRecord.read(run_dir)
    assert code == 0 and record.fvp.npu_active_cycles == 48211 and len(record.notes) == 2
    # the summary a run prints now shows the measured figures
    from condition.cli.summary import summary_rows
    assert ("NPU active cycles", "48,211", "measured: FVP_Corstone_SSE-320") in summary_rows(record)


def test_import_into_folder_without_record(tmp_path: Path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = run(["fvp", "import", str(DATA / "pmu_mlek_u55.log"), "--record", str(tmp_path / "empty")], capsys)
    assert code != 0 and "no metrics record" in err and "Traceback" not in err
    code, _, err = run(["fvp", "import", str(DATA / "pmu_mlek_u55.log"), "--record", str(tmp_path / "nope")], capsys)
    assert code != 0 and "no such run folder" in err


def test_import_bad_log_leaves_record_alone(tmp_path: Path, capsys) -> None:
    run_dir = make_record(tmp_path / "run")
    before = (run_dir / "metrics.json").read_text()
    bad = tmp_path / "bad.log"
    bad.write_text("hello\n")
    code, _, err = run(["fvp", "import", str(bad), "--record", str(run_dir)], capsys)
    assert code != 0 and "no Ethos-U PMU counters" in err
    assert (run_dir / "metrics.json").read_text() == before


def test_doctor_reports_and_exits_zero(tmp_path: Path, monkeypatch, capsys) -> None:
    fvp = tmp_path / "fvp" / "FVP_Corstone_SSE-320"
    fvp.parent.mkdir()
    fvp.write_text("#!/bin/sh\n")
    fvp.chmod(0o755)
    runners = tmp_path / "runners" / "u85"
    runners.mkdir(parents=True)
    (runners / "arm_executor_runner").write_bytes(b"\x7fELF")
    monkeypatch.setenv("CONDITION_FVP_DIR", str(fvp.parent))
    monkeypatch.setenv("CONDITION_RUNNER_DIR", str(runners.parent))
    code, out, err = run(["doctor"], capsys)
    assert code == 0, err
    for name in ("tensorflow", "tf-keras", "tfmot", "torch", "executorch", "torchao", "Vela", "TOSA reference model"):
        assert name in out
    assert "embedded default (Vela estimate): works" in out
    lines = out.splitlines()
    assert any(l.startswith("  ok") and "FVP for U85" in l and str(fvp) in l for l in lines)
    assert any(l.startswith("  MISS") and "FVP for U55" in l for l in lines)
    assert any("arm_executor_runner (.pte) for U85" in l and "semihosting" in l for l in lines)
    assert "missing, and what fixes it" in out and "Measuring on an FVP" in out


def test_doctor_shows_ray_and_where_its_token_is_never_the_token(tmp_path: Path, monkeypatch, capsys) -> None:
    from importlib import metadata

    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    _, out, _ = run(["doctor"], capsys)
    assert any(line.split() == ["Ray", metadata.version("ray")] for line in out.splitlines())
    assert "RAY_ADDRESS not set" in out and "RAY_AUTH_MODE not set" in out and "token       none" in out
    secret = "0123456789abcdef" * 4
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(secret)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    _, out, _ = run(["doctor"], capsys)
    assert "RAY_ADDRESS=127.0.0.1:6379" in out and "RAY_AUTH_MODE=token" in out
    assert f"token       found: ~/.ray/auth_token ({tmp_path / '.ray' / 'auth_token'})" in out
    monkeypatch.setenv("RAY_AUTH_TOKEN", secret)
    _, out, _ = run(["doctor"], capsys)
    assert "token       found: RAY_AUTH_TOKEN" in out and secret not in out


def test_doctor_fails_without_vela(monkeypatch, capsys) -> None:
    import importlib

    real_import_module = importlib.import_module

    def import_module(name, *a):
        if name.startswith("ethosu.vela"):
            raise ImportError(name)
        return real_import_module(name, *a)

    monkeypatch.setattr(importlib, "import_module", import_module)
    code, out, err = run(["doctor"], capsys)
    assert code != 0 and "not usable: Vela" in err and len(err.strip().splitlines()) == 1
    assert "embedded default (Vela estimate): NOT usable" in out and "pip install ethos-u-vela" in out
