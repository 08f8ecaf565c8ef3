"""FVP command line per Target, discovery order, and real runs of a fake FVP executable (a script
that prints a recorded log): discovery, argv, the timeout and parsing are exercised for real."""
from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from condition.backend.fvp import fvp_command, find_fvp, find_runner, run_artifact_on_fvp
from condition.backend.target import Target
from condition.errors import ConfigError, StepError

DATA = Path(__file__).parent / "data"


def flags(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == "-C"]


@pytest.mark.parametrize("acc, macs", [("ethos-u55-32", 32), ("ethos-u55-256", 256), ("ethos-u65-512", 512)])
def test_u55_u65_on_corstone_300(acc: str, macs: int) -> None:
    argv = fvp_command(Target.default_for(acc), "/fvp/FVP", "/r/arm_executor_runner", "/w/model.pte", timeout_s=120)
    c = flags(argv)
    assert argv[0] == "/fvp/FVP"
    assert c[0] == f"ethosu.num_macs={macs}"
    for f in ("mps3_board.visualisation.disable-visualisation=1", "mps3_board.telnetterminal0.start_telnet=0",
              "mps3_board.uart0.out_file=-", "mps3_board.uart0.shutdown_on_eot=1", "cpu0.semihosting-enable=1",
              "cpu0.semihosting-cwd=/w", "cpu0.semihosting-cmd_line=executor_runner -m model.pte"):
        assert f in c
    assert not any(x.startswith("mps4_board") for x in c)
    assert argv[argv.index("-a") + 1] == "/r/arm_executor_runner"
    assert argv[-2:] == ["--timelimit", "120"]


@pytest.mark.parametrize("macs", [128, 256, 512, 1024, 2048])
def test_u85_on_corstone_320(macs: int) -> None:
    argv = fvp_command(Target.default_for(f"ethos-u85-{macs}"), "FVP_Corstone_SSE-320", "elf", "/w/model.pte")
    c = flags(argv)
    assert c[0] == f"mps4_board.subsystem.ethosu.num_macs={macs}"
    for f in ("mps4_board.visualisation.disable-visualisation=1", "vis_hdlcd.disable_visualisation=1",
              "mps4_board.uart0.out_file=-", "mps4_board.uart0.unbuffered_output=1", "mps4_board.uart0.shutdown_on_eot=1",
              "mps4_board.subsystem.cpu0.semihosting-enable=1", "mps4_board.subsystem.cpu0.semihosting-cwd=/w"):
        assert f in c
    assert "--timelimit" in argv


def test_tflite_dynamic_load_and_embedded_modes() -> None:
    t = Target.default_for("ethos-u55-128")
    argv = fvp_command(t, "FVP", "runner.axf", "/w/m_vela.tflite", mode="dynamic")
    assert argv[argv.index("--data") + 1] == "/w/m_vela.tflite@0x90000000"
    assert not any("semihosting" in f for f in flags(argv))
    argv = fvp_command(t, "FVP", "model.elf", None, mode="embedded", fast=True)
    assert "--data" not in argv and "ethosu.extra_args=--fast" in flags(argv)


def make_exe(path: Path, body: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def test_discovery_order(tmp_path: Path) -> None:
    t = Target.default_for("ethos-u85-128")
    name = "FVP_Corstone_SSE-320"
    on_path = make_exe(tmp_path / "bin" / name, "")
    in_env = make_exe(tmp_path / "env" / "models" / "Linux64_GCC-9.3" / name, "")  # Arm's install layout
    given = make_exe(tmp_path / "given" / name, "")
    env = {"PATH": str(tmp_path / "bin"), "CONDITION_FVP_DIR": str(tmp_path / "env")}
    assert find_fvp(t, str(tmp_path / "given"), env) == given
    assert find_fvp(t, str(given), env) == given
    assert find_fvp(t, None, env) == in_env
    assert find_fvp(t, "auto", {"PATH": env["PATH"]}) == on_path
    assert find_fvp(t, None, {"PATH": str(tmp_path / "nothing")}) is None
    # U55 wants Corstone-300, not the Corstone-320 binary found for U85.
    assert find_fvp(Target.default_for("ethos-u55-128"), None, env) is None
    with pytest.raises(ConfigError, match="--fvp"):
        find_fvp(t, str(tmp_path / "missing"), env)


def test_runner_discovery(tmp_path: Path) -> None:
    u85, u55 = Target.default_for("ethos-u85-128"), Target.default_for("ethos-u55-128")
    runners = tmp_path / "runners"
    (runners / "u85").mkdir(parents=True)
    (runners / "u85" / "arm_executor_runner").write_bytes(b"\x7fELF ... ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED ...")
    (runners / "arm_executor_runner").write_bytes(b"\x7fELF ... ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED ...")  # a U85 build
    art = tmp_path / "out" / "model.pte"
    art.parent.mkdir()
    art.write_bytes(b"pte")
    env = {"CONDITION_RUNNER_DIR": str(runners)}
    r = find_runner(art, u85, env=env)
    assert r is not None and r.mode == "semihosting" and r.elf == runners / "u85" / "arm_executor_runner"
    assert find_runner(art, u55, env=env) is None  # the generic ELF is a U85 build: not used for U55
    (art.parent / "model.elf").write_bytes(b"elf with the pte inside")
    r = find_runner(art, u55, env=env)
    assert r is not None and r.mode == "embedded"
    tfl = tmp_path / "out" / "mlp_vela.tflite"
    tfl.write_bytes(b"tfl")
    assert find_runner(tfl, u85, env=env) is None
    (runners / "u85" / "mlek_inference_runner.axf").write_bytes(b"axf")
    r = find_runner(tfl, u85, env=env)
    assert r is not None and r.mode == "dynamic"


@pytest.fixture
def fake_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fake Corstone-320 that records its argv and prints a recorded ExecuTorch log."""
    fvp_dir = tmp_path / "fvp"
    runners = tmp_path / "runners"
    (runners / "ethos-u85-128").mkdir(parents=True)
    (runners / "ethos-u85-128" / "arm_executor_runner").write_bytes(b"\x7fELF")
    monkeypatch.setenv("CONDITION_RUNNER_DIR", str(runners))
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path / "empty"), "/usr/bin", "/bin"]))  # no FVP there
    monkeypatch.delenv("CONDITION_FVP_DIR", raising=False)
    art = tmp_path / "build" / "a_rather_long_artifact_name_int8.pte"
    art.parent.mkdir()
    art.write_bytes(b"PTE bytes")
    return fvp_dir, art, tmp_path / "work"


def test_fake_fvp_run_end_to_end(fake_setup, tmp_path: Path) -> None:
    fvp_dir, art, work = fake_setup
    argv_file = tmp_path / "argv.json"
    make_exe(fvp_dir / "FVP_Corstone_SSE-320",
             f'"{sys.executable}" -c "import json,sys; json.dump(sys.argv[1:], open(\'{argv_file}\',\'w\'))" "$@"\n'
             f'cat "{DATA / "pmu_executorch_u85.log"}"\n')
    m, note = run_artifact_on_fvp(art, Target.default_for("ethos-u85-128"), str(fvp_dir), work)
    assert note is None and m is not None
    assert m.npu_active_cycles == 97342 and m.weight_decoder_active_cycles == 74180
    assert m.platform == "FVP_Corstone_SSE-320" and m.source == "measured"
    assert Path(m.log_path).is_file() and "ethosu_pmu_cycle_cntr" in Path(m.log_path).read_text()
    argv = json.loads(argv_file.read_text())
    assert "mps4_board.subsystem.ethosu.num_macs=128" in argv
    assert "mps4_board.subsystem.cpu0.semihosting-cmd_line=executor_runner -m model.pte" in argv
    assert (work / "model.pte").read_bytes() == b"PTE bytes"  # short name in the semihosting cwd


def test_no_fvp_or_runner_gives_a_note(fake_setup, monkeypatch: pytest.MonkeyPatch) -> None:
    fvp_dir, art, work = fake_setup
    m, note = run_artifact_on_fvp(art, Target.default_for("ethos-u85-128"), None, work)
    assert m is None and "FVP_Corstone_SSE-320" in note and "\n" not in note
    make_exe(fvp_dir / "FVP_Corstone_SSE-320", "exit 0\n")
    monkeypatch.setenv("CONDITION_RUNNER_DIR", str(work / "none"))
    m, note = run_artifact_on_fvp(art, Target.default_for("ethos-u85-256"), str(fvp_dir), work)
    assert m is None and "arm_executor_runner" in note and "CONDITION_RUNNER_DIR" in note


def test_timeout_raises_step_error(fake_setup) -> None:
    fvp_dir, art, work = fake_setup
    make_exe(fvp_dir / "FVP_Corstone_SSE-320", "echo booting\nexec sleep 30\n")
    with pytest.raises(StepError) as info:
        run_artifact_on_fvp(art, Target.default_for("ethos-u85-128"), str(fvp_dir), work, timeout_s=1)
    msg = str(info.value)
    assert "FVP_Corstone_SSE-320" in msg and art.name in msg and "no result after" in msg


@pytest.mark.parametrize("body, why", [
    ("echo 'E [executorch:arm_executor_runner.cpp:700 runner_init()] Program loading failed'\n", "Program loading failed"),
    ("echo 'Info: Simulation is stopping. Reason: CPU time has been exceeded.'\n", "CPU time"),
    ("echo nothing\nexit 3\n", "exit code 3"),
    ("echo 'Program complete, exiting.'\n", "no Ethos-U PMU counters"),
])
def test_failing_run_raises_step_error(fake_setup, body: str, why: str) -> None:
    fvp_dir, art, work = fake_setup
    make_exe(fvp_dir / "FVP_Corstone_SSE-320", body)
    with pytest.raises(StepError, match=why):
        run_artifact_on_fvp(art, Target.default_for("ethos-u85-128"), str(fvp_dir), work)


def test_plain_tflite_is_refused(tmp_path: Path) -> None:
    from condition.errors import ArtifactError

    tfl = tmp_path / "model_int8.tflite"
    tfl.write_bytes(b"TFL3 no npu op")
    with pytest.raises(ArtifactError, match="not Vela-compiled"):
        run_artifact_on_fvp(tfl, Target(), None, tmp_path / "w")
