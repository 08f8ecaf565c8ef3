"""The NPU a run compiles for: one Target shared by both frontends so their figures compare.

Hardware only (accelerator, system config, memory mode, optional Vela .ini); the compiler
behaviour flags are fixed (`VELA_BEHAVIOUR_FLAGS`), the same for every run and both frontends.
Defaults per NPU family are in `Target.default_for`. The Target stays a Target through a run and
its record; `as_dict` / `from_dict` are its JSON form (run identity, metrics record, manifest).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from condition.errors import ConfigError


class Accelerator(str, enum.Enum):
    """Every MAC configuration Vela 5.1 accepts; values are Vela's CLI strings."""

    U55_32 = "ethos-u55-32"
    U55_64 = "ethos-u55-64"
    U55_128 = "ethos-u55-128"
    U55_256 = "ethos-u55-256"
    U65_256 = "ethos-u65-256"
    U65_512 = "ethos-u65-512"
    U85_128 = "ethos-u85-128"
    U85_256 = "ethos-u85-256"
    U85_512 = "ethos-u85-512"
    U85_1024 = "ethos-u85-1024"
    U85_2048 = "ethos-u85-2048"

    @property
    def family(self) -> str:
        """'u55', 'u65' or 'u85'."""
        return self.value.split("-")[1]

    @property
    def macs(self) -> int:
        return int(self.value.rsplit("-", 1)[1])


SYSTEM_CONFIGS: dict[str, tuple[str, ...]] = {
    "u55": ("Ethos_U55_Deep_Embedded", "Ethos_U55_High_End_Embedded"),
    "u65": ("Ethos_U65_Embedded", "Ethos_U65_Mid_End", "Ethos_U65_High_End", "Ethos_U65_Client_Server"),
    "u85": (
        "Ethos_U85_SYS_Flash_Low",
        "Ethos_U85_SYS_Flash_High",
        "Ethos_U85_SYS_DRAM_Low",
        "Ethos_U85_SYS_DRAM_Mid",
        "Ethos_U85_SYS_DRAM_High",
    ),
}
MEMORY_MODES: tuple[str, ...] = (
    "Sram_Only",
    "Shared_Sram",
    "Dedicated_Sram",
    "Dedicated_Sram_256KB",
    "Dedicated_Sram_384KB",
    "Dedicated_Sram_512KB",
)
# Same choices as the seed notebook for U85 and ExecuTorch's defaults for U55/U65.
DEFAULT_SYSTEM_CONFIG = {
    "u55": "Ethos_U55_High_End_Embedded",
    "u65": "Ethos_U65_High_End",
    "u85": "Ethos_U85_SYS_DRAM_Mid",
}
DEFAULT_MEMORY_MODE = {"u55": "Shared_Sram", "u65": "Dedicated_Sram_384KB", "u85": "Shared_Sram"}
DEFAULT_ACCELERATOR = Accelerator.U85_128


def parse_accelerator(value: str | Accelerator) -> Accelerator:
    if isinstance(value, Accelerator):
        return value
    text = str(value).strip().lower()
    try:
        return Accelerator(text)
    except ValueError:
        close = [a.value for a in Accelerator if a.family in text] or [a.value for a in Accelerator]
        raise ConfigError("--target", value, "unknown Ethos-U configuration", "choose one of " + ", ".join(close)) from None


# Compiler behaviour, the same for every run and both frontends (the TF Vela argv and the ExecuTorch
# compile spec's extra_flags): optimise for speed, and write <name>_per-layer.csv, which Vela writes
# only with --verbose-performance (the summary CSV is always written).
VELA_BEHAVIOUR_FLAGS: tuple[str, ...] = ("--optimise=Performance", "--verbose-performance")


@dataclass(frozen=True)
class Target:
    accelerator: Accelerator = DEFAULT_ACCELERATOR
    system_config: str = DEFAULT_SYSTEM_CONFIG["u85"]
    memory_mode: str = DEFAULT_MEMORY_MODE["u85"]
    vela_config: str | None = None  # the user's Vela .ini (--vela-config); None means Vela's built-in Arm/vela.ini

    def __post_init__(self) -> None:
        object.__setattr__(self, "accelerator", parse_accelerator(self.accelerator))
        if self.vela_config is not None:
            return  # a user .ini may define its own system configs and memory modes
        family = self.accelerator.family
        if self.system_config not in SYSTEM_CONFIGS[family]:
            raise ConfigError(
                "--system-config", self.system_config, f"not a system config for {self.accelerator.value}",
                "choose one of " + ", ".join(SYSTEM_CONFIGS[family]),
            )
        if self.memory_mode not in MEMORY_MODES:
            raise ConfigError("--memory-mode", self.memory_mode, "unknown memory mode", "choose one of " + ", ".join(MEMORY_MODES))
        if family == "u55" and self.memory_mode.startswith("Dedicated_Sram"):
            raise ConfigError("--memory-mode", self.memory_mode, "Ethos-U55 has no dedicated SRAM mode", "use Shared_Sram or Sram_Only")

    @classmethod
    def default_for(
        cls,
        accelerator: str | Accelerator = DEFAULT_ACCELERATOR,
        system_config: str | None = None,
        memory_mode: str | None = None,
        vela_config: str | None = None,
    ) -> "Target":
        """The Target from what the user gave (CLI, recipe): per-family defaults for what they left out,
        and a given .ini must exist (checked here, not on records read back from another machine)."""
        if vela_config is not None and not Path(vela_config).is_file():
            raise ConfigError("--vela-config", vela_config, "file not found")
        acc = parse_accelerator(accelerator)
        return cls(
            accelerator=acc,
            system_config=system_config or DEFAULT_SYSTEM_CONFIG[acc.family],
            memory_mode=memory_mode or DEFAULT_MEMORY_MODE[acc.family],
            vela_config=vela_config,
        )

    @property
    def npu(self) -> str:
        return self.accelerator.value

    @property
    def macs(self) -> int:
        return self.accelerator.macs

    @property
    def family(self) -> str:
        return self.accelerator.family

    def label(self) -> str:
        """How reports and summaries name the Target: "ethos-u85-128 · Ethos_U85_SYS_DRAM_Mid · Shared_Sram"."""
        parts = [self.npu, self.system_config, self.memory_mode] + ([self.vela_config] if self.vela_config else [])
        return " · ".join(parts)

    def as_dict(self) -> dict[str, object]:
        """The JSON form. Its keys and values are part of every run's config hash: keep them as they
        are (the .ini stays under its first key, "config_ini"), or every recorded run changes folder."""
        return {
            "accelerator": self.npu,
            "system_config": self.system_config,
            "memory_mode": self.memory_mode,
            "config_ini": self.vela_config,
            "macs": self.macs,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> "Target":
        return cls(
            accelerator=str(d["accelerator"]),
            system_config=str(d["system_config"]),
            memory_mode=str(d["memory_mode"]),
            vela_config=str(d["config_ini"]) if d.get("config_ini") else None,
        )


def vela_config_path(target: Target) -> str:
    """The .ini Vela reads system configs and memory modes from."""
    if target.vela_config:
        return target.vela_config
    from importlib import resources

    return str(resources.files("ethosu") / "config_files" / "Arm" / "vela.ini")


def vela_target_flags(target: Target) -> list[str]:
    """The Target as Vela's hardware flags (the .ini only when the user gave one)."""
    flags = [
        f"--accelerator-config={target.npu}",
        f"--system-config={target.system_config}",
        f"--memory-mode={target.memory_mode}",
    ]
    return flags + ([f"--config={target.vela_config}"] if target.vela_config else [])


def vela_argv(model_path: str | Path, out_dir: str | Path, target: Target) -> list[str]:
    """Full argv for `ethosu.vela.vela.main` on a .tflite, as a list (never a split string)."""
    return [str(model_path), f"--output-dir={out_dir}", *vela_target_flags(target), *VELA_BEHAVIOUR_FLAGS]
