"""Ethos-U PMU counters read from the text an FVP or a board printed.

Three print formats are understood, each checked against the code that prints it:

* ExecuTorch `examples/arm/executor_runner/arm_perf_monitor.cpp` (StopMeasurements):
  `ethosu_pmu_cycle_cntr : N (X per inference)`, `ethosu_pmu_cntrK : N (X per inference)`,
  `Ethos-U PMU Events:[ETHOSU_PMU_..., ...]` naming counter K, `NPU Inferences : N`; every line
  behind an ET_LOG prefix such as `I [executorch:arm_perf_monitor.cpp:212 StopMeasurements()] `.
  Older runners print the same lines without `(X per inference)`.
* ethos-u core software (message_handler / TFLite-Micro samples): `ethosu_pmu_cntrK : N` and
  `ethosu_pmu_cycle_cntr : N cycles`, counters unnamed (they are configured by the request).
* ML Embedded Evaluation Kit `ethosu_profiler.c`: `NPU ACTIVE cycles: N`, `NPU IDLE cycles: N`,
  `NPU TOTAL cycles: N`, `NPU AXI0_RD_DATA_BEAT_RECEIVED beats: N` (U55/U65) and
  `NPU ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED beats: N` (U85), behind `INFO - `.

In the ExecuTorch and core-software runners the cycle counter runs from NPU_ACTIVE to NPU_IDLE,
so it *is* the NPU active cycle count; in MLEK it is the total and NPU ACTIVE is its own counter.
Figures are the totals the log prints (over `inferences` runs), never rescaled.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from typing import Any

from condition.backend.metrics import FvpMeasurement
from condition.errors import ArtifactError

log = logging.getLogger(__name__)

_NUM = r"(\d+)"
_PER_INFERENCE = r"(?:\s*\(\s*([\d.]+)\s+per inference\s*\))?"
_CYCLE_RE = re.compile(r"ethosu_pmu_cycle_cntr\s*:\s*" + _NUM + r"(?:\s*cycles)?" + _PER_INFERENCE)
_COUNTER_RE = re.compile(r"ethosu_pmu_cntr(\d+)\s*:\s*" + _NUM + r"(?:\s*cycles|\s*beats)?" + _PER_INFERENCE)
_EVENTS_RE = re.compile(r"Ethos-U PMU Events\s*:\s*\[([^\]]*)\]")
_INFERENCES_RE = re.compile(r"NPU Inferences\s*:\s*(\d+)")
# MLEK: "NPU ACTIVE cycles: N", "NPU AXI0_RD_DATA_BEAT_RECEIVED beats: N",
# "NPU ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED beats: N"; some kit versions print "NPU ACTIVE: N cycles".
_MLEK_RE = re.compile(r"\bNPU ([A-Za-z0-9_]+) (cycles|beats)\s*:\s*" + _NUM, re.IGNORECASE)
_MLEK_ALT_RE = re.compile(r"\bNPU ([A-Za-z0-9_]+)\s*:\s*" + _NUM + r" (cycles|beats)\b", re.IGNORECASE)

# Normalised field -> event names that provide it, most specific first. On U55/U65, AXI1 is the
# port Vela assigns to off-chip flash/DRAM (axi1_port in its vela.ini), hence "external".
NORMALISED: dict[str, tuple[str, ...]] = {
    "npu_active_cycles": ("ETHOSU_PMU_NPU_ACTIVE",),
    "mac_active_cycles": ("ETHOSU_PMU_MAC_ACTIVE",),
    "weight_decoder_active_cycles": ("ETHOSU_PMU_WD_ACTIVE",),
    "ext_read_beats": ("ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED", "ETHOSU_PMU_AXI1_RD_DATA_BEAT_RECEIVED"),
    "ext_write_beats": ("ETHOSU_PMU_EXT_WR_DATA_BEAT_WRITTEN", "ETHOSU_PMU_AXI1_WR_DATA_BEAT_WRITTEN"),
    "npu_idle_cycles": ("ETHOSU_PMU_NPU_IDLE",),
}
FORMATS = ("executorch", "ethos-u-core", "mlek")


@dataclass(frozen=True)
class PmuCounters:
    """What one log says; `format` is one of FORMATS (the first that matched)."""

    format: str
    pmu_cycle_counter: int | None
    events: dict[str, int] = field(default_factory=dict)
    inferences: int = 1
    cycle_counter_is_npu_active: bool = True

    def normalised(self) -> dict[str, int | None]:
        out: dict[str, int | None] = {}
        for name, events in NORMALISED.items():
            out[name] = next((self.events[e] for e in events if e in self.events), None)
        if out["npu_active_cycles"] is None and self.cycle_counter_is_npu_active:
            out["npu_active_cycles"] = self.pmu_cycle_counter
        return out

    def as_json(self) -> dict[str, Any]:
        """The object `condition fvp parse --json` prints."""
        return {
            "pmu_cycle_counter": self.pmu_cycle_counter,
            "events": dict(self.events),
            "inferences": self.inferences,
            **self.normalised(),
        }

    def to_measurement(self, platform: str = "", log_path: str = "") -> FvpMeasurement:
        return FvpMeasurement(
            pmu_cycle_counter=self.pmu_cycle_counter,
            inferences=self.inferences,
            events=dict(self.events),
            platform=platform,
            log_path=log_path,
            **self.normalised(),
        )


def _event_name(mlek_name: str) -> str:
    name = mlek_name.upper()
    return name if name.startswith("ETHOSU_PMU_") else "ETHOSU_PMU_NPU_" + name if name in ("ACTIVE", "IDLE") else "ETHOSU_PMU_" + name


def parse_counters(text: str, source: str = "log") -> PmuCounters:
    """Read every PMU counter in `text`; when a report is printed twice the last one wins.

    >>> parse_counters("ethosu_pmu_cycle_cntr : 97000 (97000.00 per inference)").pmu_cycle_counter
    97000
    """
    cycle: int | None = None
    per_inference: float | None = None
    numbered: dict[int, int] = {}
    names: list[str] = []
    inferences: int | None = None
    mlek: dict[str, int] = {}
    mlek_total: int | None = None
    saw_unit_cycles = False
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if m := _CYCLE_RE.search(line):
            cycle = int(m.group(1))
            per_inference = float(m.group(2)) if m.group(2) else None
            saw_unit_cycles = saw_unit_cycles or "cycles" in line[m.start():m.end()]
            continue
        if m := _COUNTER_RE.search(line):
            numbered[int(m.group(1))] = int(m.group(2))
            continue
        if m := _EVENTS_RE.search(line):
            names = [n.strip() for n in m.group(1).split(",") if n.strip()]
            continue
        if m := _INFERENCES_RE.search(line):
            inferences = int(m.group(1))
            continue
        if m := _MLEK_RE.search(line):
            name, value = m.group(1), int(m.group(3))
        elif m := _MLEK_ALT_RE.search(line):
            name, value = m.group(1), int(m.group(2))
        else:
            continue
        if name.upper() == "TOTAL":
            mlek_total = value
        else:
            mlek[_event_name(name)] = value

    if cycle is None and not numbered and mlek_total is None and not mlek:
        raise ArtifactError(
            source,
            "no Ethos-U PMU counters found (expected ExecuTorch `ethosu_pmu_cycle_cntr : N` / `ethosu_pmu_cntrK : N` "
            "lines or ML Embedded Evaluation Kit `NPU ACTIVE cycles: N` lines; was the runner built with the PMU report?)",
        )
    if cycle is not None or numbered:
        events = {(names[k] if k < len(names) else f"cntr{k}"): v for k, v in sorted(numbered.items())}
        if inferences is None and per_inference and cycle:
            inferences = max(1, round(cycle / per_inference))
        fmt = "executorch" if names or per_inference is not None or not saw_unit_cycles else "ethos-u-core"
        counters = PmuCounters(fmt, cycle, events, inferences or 1, cycle_counter_is_npu_active=True)
        if mlek:
            log.debug("%s: both runner and MLEK counter lines; using the runner's", source)
        return counters
    return PmuCounters("mlek", mlek_total, mlek, inferences or 1, cycle_counter_is_npu_active=False)


def parse_pmu_log(text: str, source: str = "log", platform: str = "", log_path: str = "") -> FvpMeasurement:
    """Counters of a captured FVP/board log as the metrics record's FvpMeasurement (source "measured")."""
    return parse_counters(text, source).to_measurement(platform=platform, log_path=log_path)
