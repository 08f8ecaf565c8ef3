"""Target: every Vela MAC configuration, per-family defaults, checked values, label, JSON form, Vela argv."""
from __future__ import annotations

import json

import pytest

from condition.backend.metrics import config_hash
from condition.backend.target import (
    DEFAULT_MEMORY_MODE, DEFAULT_SYSTEM_CONFIG, SYSTEM_CONFIGS, VELA_BEHAVIOUR_FLAGS, Accelerator, Target, parse_accelerator,
    vela_argv, vela_config_path,
)
from condition.errors import ConfigError


def test_every_accelerator_has_family_macs_and_a_valid_default() -> None:
    for acc in Accelerator:
        t = Target.default_for(acc.value)
        assert t.npu == acc.value
        assert t.macs == int(acc.value.rsplit("-", 1)[1])
        assert t.family in ("u55", "u65", "u85")
        assert t.system_config in SYSTEM_CONFIGS[t.family]
        assert t.system_config == DEFAULT_SYSTEM_CONFIG[t.family]
        assert t.memory_mode == DEFAULT_MEMORY_MODE[t.family]


def test_seed_default_is_u85_128_dram_mid_shared_sram() -> None:
    t = Target()
    assert (t.npu, t.system_config, t.memory_mode) == ("ethos-u85-128", "Ethos_U85_SYS_DRAM_Mid", "Shared_Sram")


def test_accelerator_parsing_is_case_insensitive_and_errors_list_choices() -> None:
    assert parse_accelerator(" Ethos-U55-128 ") is Accelerator.U55_128
    with pytest.raises(ConfigError, match="--target") as err:
        parse_accelerator("ethos-u55-999")
    assert "ethos-u55-128" in str(err.value) and "ethos-u85" not in str(err.value)  # only the U55 family suggested
    with pytest.raises(ConfigError, match="unknown Ethos-U"):
        Target.default_for("cortex-m55")


def test_system_config_must_match_the_family() -> None:
    with pytest.raises(ConfigError, match="--system-config"):
        Target.default_for("ethos-u55-128", system_config="Ethos_U85_SYS_DRAM_Mid")
    assert Target.default_for("ethos-u85-256", system_config="Ethos_U85_SYS_Flash_High").system_config == "Ethos_U85_SYS_Flash_High"


def test_u55_has_no_dedicated_sram_and_unknown_modes_fail() -> None:
    with pytest.raises(ConfigError, match="no dedicated SRAM"):
        Target.default_for("ethos-u55-64", memory_mode="Dedicated_Sram")
    with pytest.raises(ConfigError, match="--memory-mode"):
        Target.default_for("ethos-u85-128", memory_mode="Huge_Sram")


def test_user_ini_must_exist_and_bypasses_builtin_names(tmp_path) -> None:
    with pytest.raises(ConfigError, match="--vela-config"):
        Target.default_for("ethos-u85-128", vela_config=str(tmp_path / "missing.ini"))
    ini = tmp_path / "my.ini"
    ini.write_text("[System_Config.Mine]\n")
    t = Target.default_for("ethos-u85-128", system_config="Mine", vela_config=str(ini))
    assert vela_config_path(t) == str(ini)
    assert f"--config={ini}" in vela_argv("m.tflite", "out", t)
    assert t.label() == f"ethos-u85-128 · Mine · Shared_Sram · {ini}"
    ini.unlink()  # a record read back on another machine still loads: only user input is checked
    assert Target.from_dict(t.as_dict()) == t


def test_round_trip_through_dict() -> None:
    t = Target.default_for("ethos-u65-512")
    assert Target.from_dict(t.as_dict()) == t
    assert t.as_dict()["macs"] == 512


def test_json_form_and_hash_are_those_of_recorded_runs() -> None:
    """as_dict feeds every run's config hash and every record: its bytes must not change."""
    assert json.dumps(Target().as_dict()) == ('{"accelerator": "ethos-u85-128", "system_config": "Ethos_U85_SYS_DRAM_Mid", '
                                              '"memory_mode": "Shared_Sram", "config_ini": null, "macs": 128}')
    assert config_hash({"target": Target.default_for("ethos-u55-128").as_dict()}) == config_hash({"target": {
        "accelerator": "ethos-u55-128", "system_config": "Ethos_U55_High_End_Embedded", "memory_mode": "Shared_Sram",
        "config_ini": None, "macs": 128}})


def test_label_names_the_hardware() -> None:
    assert Target().label() == "ethos-u85-128 · Ethos_U85_SYS_DRAM_Mid · Shared_Sram"
    assert Target.default_for("ethos-u65-256").label() == "ethos-u65-256 · Ethos_U65_High_End · Dedicated_Sram_384KB"


def test_vela_argv_is_a_list_with_target_and_behaviour_flags() -> None:
    t = Target.default_for("ethos-u55-128")
    argv = vela_argv("dir/model.tflite", "outdir", t)
    assert argv[0] == "dir/model.tflite"
    assert "--output-dir=outdir" in argv
    assert "--accelerator-config=ethos-u55-128" in argv
    assert "--system-config=Ethos_U55_High_End_Embedded" in argv
    assert "--memory-mode=Shared_Sram" in argv
    assert argv[-len(VELA_BEHAVIOUR_FLAGS):] == list(VELA_BEHAVIOUR_FLAGS) == ["--optimise=Performance", "--verbose-performance"]
    assert not any(a.startswith("--config=") for a in argv)  # Vela's built-in .ini unless the user gives one
    assert len(argv) == len(set(argv)) and not any(" " in a for a in argv)  # each flag once, never a joined string


def test_builtin_vela_ini_exists_and_names_the_default_system_configs() -> None:
    from pathlib import Path

    text = Path(vela_config_path(Target())).read_text()
    for name in DEFAULT_SYSTEM_CONFIG.values():
        assert f"[System_Config.{name}]" in text
