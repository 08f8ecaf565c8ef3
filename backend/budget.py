"""Will it fit? Memory and time budgets (`--sram-limit`, `--flash-limit`, `--max-ms`) and the
check of a record against them.

A size is written as a person writes it: `256KiB`, `2MiB`, `1.5MB`, `300kB`, `4096` (plain bytes);
KB/MB/GB are powers of 1000, KiB/MiB/GiB of 1024, the unit's case is free. What each limit compares:

- SRAM: Vela's SRAM use (its summary's "Total SRAM used": the arena, or the arena's cache in a
  Dedicated_Sram mode). In Sram_Only the weights sit in SRAM too, but Vela 5.2 reports them as
  On-chip Flash (the const and arena areas share AXI0), so there they are added.
- flash: the deployed artifact's bytes (the Vela .tflite or the .pte, read from the file): what the
  application stores in flash in every memory mode, command stream and graph included. Vela's
  flash use counts only what the NPU reads from flash at run time (0 when the weights live in DRAM).
- time: Vela's inference time at the system config's clock (an estimate).

    limits = Limits(sram_bytes=parse_size("256KiB", "--sram-limit"))
    misfits(record, limits)  # ["does not fit: SRAM 312.0 KiB > 256 KiB (Vela estimate)"]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from condition.backend.metrics import MetricsRecord, VelaEstimate
from condition.errors import ConfigError

UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*$", re.I)
MISFIT = "does not fit: "  # how every budget problem starts (records keep them beside the plausibility ones)
DRIFT = 1e-9


def parse_size(value: str | int | float, option: str = "size") -> int:
    """Bytes from `256KiB`, `2MiB`, `1.5MB` or plain bytes; a ConfigError naming `option` otherwise."""
    if isinstance(value, bool):
        raise ConfigError(option, value, "not a size", "write e.g. 256KiB, 2MiB, 1.5MB or plain bytes")
    if isinstance(value, (int, float)):
        value = str(value)
    m = _SIZE.match(str(value))
    if m is None:
        raise ConfigError(option, value, "not a size", "write e.g. 256KiB, 2MiB, 1.5MB or plain bytes")
    number, unit = float(m.group(1)), m.group(2).lower()
    if unit not in UNITS:
        raise ConfigError(option, value, f"unknown unit {m.group(2)!r}", "use B, KB, MB, GB (×1000) or KiB, MiB, GiB (×1024)")
    size = number * UNITS[unit]
    if abs(size - round(size)) > 1e-6 * max(size, 1):
        raise ConfigError(option, value, "is not a whole number of bytes")
    if round(size) < 1:
        raise ConfigError(option, value, "must be at least 1 byte")
    return int(round(size))


def format_size(n: float) -> str:
    """`256 KiB`, `312.5 KiB`, `2 MiB`, `900 B`: the largest binary unit the size reaches."""
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{int(n)} B"


@dataclass(frozen=True)
class Limits:
    """The budgets a deployment must fit; None = no limit. They judge a run, they do not change its
    artifact, so they are not part of a run's identity (condition/run.py)."""

    sram_bytes: int | None = None
    flash_bytes: int | None = None
    max_ms: float | None = None

    def __post_init__(self) -> None:
        if self.max_ms is not None and not self.max_ms > 0:
            raise ConfigError("--max-ms", self.max_ms, "must be a positive time in milliseconds")

    def __bool__(self) -> bool:
        return any(v is not None for v in (self.sram_bytes, self.flash_bytes, self.max_ms))

    def as_dict(self) -> dict[str, float]:
        """The JSON form (the record's `limits`, a search's settings): only the limits given."""
        d = {"sram_limit_bytes": self.sram_bytes, "flash_limit_bytes": self.flash_bytes, "max_ms": self.max_ms}
        return {k: v for k, v in d.items() if v is not None}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Limits":
        d = d or {}
        return cls(d.get("sram_limit_bytes"), d.get("flash_limit_bytes"), d.get("max_ms"))

    def describe(self) -> str:
        """`SRAM ≤ 256 KiB, flash ≤ 2 MiB`."""
        parts = [f"SRAM ≤ {format_size(self.sram_bytes)}" if self.sram_bytes is not None else "",
                 f"flash ≤ {format_size(self.flash_bytes)}" if self.flash_bytes is not None else "",
                 f"inference ≤ {self.max_ms:g} ms" if self.max_ms is not None else ""]
        return ", ".join(p for p in parts if p)


@dataclass(frozen=True)
class Needs:
    """What one record needs, in the limits' terms (None: the record does not say)."""

    sram_bytes: int | None
    flash_bytes: int | None
    inference_ms: float | None
    sram_source: str = "Vela estimate"


def needs(record: MetricsRecord) -> Needs:
    """The figures each limit compares (see the module docstring for why these)."""
    deployed = record.artifact("vela_tflite") or record.artifact("pte")
    n = needs_of(record.vela, deployed.bytes if deployed is not None else None)
    m, v = record.memory, record.vela
    if n.sram_bytes is None and m is not None and m.artifact == "pte" and v is not None and v.memory_mode == "Shared_Sram":
        # a .pte measured as it is (no Vela run): in Shared_Sram its delegate scratch is the SRAM arena
        return Needs(m.scratch_bytes, n.flash_bytes, n.inference_ms, "read from the .pte: delegate scratch")
    return n


def needs_of(v: VelaEstimate | None, deployed_bytes: int | None) -> Needs:
    """Needs from a Vela estimate and the size of the file deployed to flash."""
    sram = None
    if v is not None and v.sram_used_bytes is not None:
        sram = v.sram_used_bytes + ((v.on_chip_flash_used_bytes or 0) if v.memory_mode == "Sram_Only" else 0)
    ms = v.inference_ms if v is not None and v.source == "estimate" and v.total_cycles else None
    return Needs(sram, deployed_bytes, ms)


def misfits(record: MetricsRecord, limits: Limits) -> list[str]:
    """One sentence per limit the record exceeds; a limit whose figure the record lacks is said too."""
    return misfits_of(needs(record), limits)


def excess(n: Needs, limits: Limits) -> float:
    """How far over its limits a deployment is: the largest need / limit − 1 (0 when it fits; 1 when a
    limited figure is unknown). A search's constraint: > 0 is infeasible, and less over is better."""
    over = 0.0
    for need, limit in ((n.sram_bytes, limits.sram_bytes), (n.flash_bytes, limits.flash_bytes), (n.inference_ms, limits.max_ms)):
        if limit is not None:
            over = max(over, 1.0 if need is None else need / limit - 1.0)
    return round(over, 6) if over > DRIFT else 0.0


def misfits_of(n: Needs, limits: Limits) -> list[str]:
    found = []
    for name, need, limit, fmt, source in (
        ("SRAM", n.sram_bytes, limits.sram_bytes, format_size, n.sram_source),
        ("flash", n.flash_bytes, limits.flash_bytes, format_size, "artifact size"),
        ("inference time", n.inference_ms, limits.max_ms, lambda x: f"{x:.3f} ms", "Vela estimate"),
    ):
        if limit is None:
            continue
        if need is None:
            found.append(f"{MISFIT}{name} unknown (the record has no figure to compare with {fmt(limit)})")
        elif need > limit * (1 + DRIFT):
            found.append(f"{MISFIT}{name} {fmt(need)} > {fmt(limit)} ({source})")
    return found


def judge(record: MetricsRecord, limits: Limits) -> MetricsRecord:
    """The record with `limits` and its misfits in place of any earlier ones (a finished run reused
    under other limits is judged again; its plausibility problems stay)."""
    record.problems = [p for p in record.problems if not p.startswith(MISFIT)] + misfits(record, limits)
    record.limits = limits.as_dict()
    return record
