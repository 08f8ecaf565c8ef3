"""PMU counters from the three log formats (recorded samples in tests/data, formats verified
against the printing code: ExecuTorch arm_perf_monitor.cpp, ethos-u core software, MLEK)."""
from __future__ import annotations

from pathlib import Path

import pytest

from condition.backend.pmu_log import parse_counters, parse_pmu_log
from condition.errors import ArtifactError, ConditionError

DATA = Path(__file__).parent / "data"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_executorch_u85_seven_named_counters_and_prefix() -> None:
    c = parse_counters(read("pmu_executorch_u85.log"))
    assert c.format == "executorch"
    assert c.pmu_cycle_counter == 97342
    assert c.inferences == 1
    assert list(c.events) == [
        "ETHOSU_PMU_SRAM_RD_DATA_BEAT_RECEIVED", "ETHOSU_PMU_SRAM_WR_DATA_BEAT_WRITTEN",
        "ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED", "ETHOSU_PMU_EXT_WR_DATA_BEAT_WRITTEN",
        "ETHOSU_PMU_NPU_IDLE", "ETHOSU_PMU_MAC_ACTIVE", "ETHOSU_PMU_WD_ACTIVE",
    ]
    n = c.normalised()
    # The runner's cycle counter runs from NPU_ACTIVE to NPU_IDLE: it is the NPU active count.
    assert n == {
        "npu_active_cycles": 97342, "mac_active_cycles": 8196, "weight_decoder_active_cycles": 74180,
        "ext_read_beats": 32411, "ext_write_beats": 3, "npu_idle_cycles": 412,
    }


def test_executorch_u55_four_counters_ten_inferences() -> None:
    c = parse_counters(read("pmu_executorch_u55.log"))
    assert len(c.events) == 4
    assert c.inferences == 10
    assert c.pmu_cycle_counter == 2248730  # totals as printed, not rescaled
    n = c.normalised()
    assert n["ext_read_beats"] == 318320  # AXI1 is the off-chip port on U55/U65
    assert n["ext_write_beats"] is None
    assert n["mac_active_cycles"] is None and n["weight_decoder_active_cycles"] is None
    assert n["npu_idle_cycles"] == 4520


def test_inferences_from_per_inference_ratio_without_count_line() -> None:
    text = "I [executorch:arm_perf_monitor.cpp:210 StopMeasurements()] ethosu_pmu_cycle_cntr : 300 (100.00 per inference)\n"
    assert parse_counters(text).inferences == 3


def test_older_executorch_prefix_without_per_inference() -> None:
    text = "\n".join([
        "I [executorch:arm_perf_monitor.cpp:120] ethosu_pmu_cycle_cntr : 5920305",
        "I [executorch:arm_perf_monitor.cpp:171] ethosu_pmu_cntr0 : 359921",
        "I [executorch:arm_perf_monitor.cpp:171] ethosu_pmu_cntr1 : 0",
        "I [executorch:arm_perf_monitor.cpp:171] ethosu_pmu_cntr2 : 0",
        "I [executorch:arm_perf_monitor.cpp:171] ethosu_pmu_cntr3 : 503",
        "I [executorch:arm_perf_monitor.cpp:178] Ethos-U PMU Events:[ETHOSU_PMU_AXI0_RD_DATA_BEAT_RECEIVED, "
        "ETHOSU_PMU_AXI1_RD_DATA_BEAT_RECEIVED, ETHOSU_PMU_AXI0_WR_DATA_BEAT_WRITTEN, ETHOSU_PMU_NPU_IDLE]",
    ])
    c = parse_counters(text)
    assert c.inferences == 1
    assert c.events["ETHOSU_PMU_AXI0_RD_DATA_BEAT_RECEIVED"] == 359921
    assert c.normalised()["npu_idle_cycles"] == 503


def test_crlf_and_unnamed_counters_are_cntrK() -> None:
    text = "ethosu_pmu_cycle_cntr : 10 (10.00 per inference)\r\nethosu_pmu_cntr0 : 7 (7.00 per inference)\r\n"
    c = parse_counters(text)
    assert c.events == {"cntr0": 7}
    assert c.pmu_cycle_counter == 10


def test_core_software_u85_eight_counters_unnamed() -> None:
    c = parse_counters(read("pmu_core_software_u85.log"))
    assert c.format == "ethos-u-core"
    assert c.events == {f"cntr{k}": v for k, v in enumerate([5120, 2304, 3012, 4, 388, 8196, 7950, 0])}
    assert c.pmu_cycle_counter == 22471
    n = c.normalised()
    assert n["npu_active_cycles"] == 22471  # same NPU_ACTIVE..NPU_IDLE cycle counter set-up
    assert n["mac_active_cycles"] is None  # unnamed counters are not guessed


def test_mlek_u55_profiler_lines() -> None:
    c = parse_counters(read("pmu_mlek_u55.log"))
    assert c.format == "mlek"
    assert c.pmu_cycle_counter == 34178  # NPU TOTAL cycles
    n = c.normalised()
    assert n["npu_active_cycles"] == 33145  # its own counter, not the total
    assert n["npu_idle_cycles"] == 1033
    assert n["ext_read_beats"] == 2219
    assert c.events["ETHOSU_PMU_AXI0_WR_DATA_BEAT_WRITTEN"] == 3248


def test_mlek_u85_names_and_lowercase_total() -> None:
    c = parse_counters(read("pmu_mlek_u85.log"))
    n = c.normalised()
    assert n["ext_read_beats"] == 3140 and n["ext_write_beats"] == 3
    assert n["npu_active_cycles"] == 48211
    assert parse_counters("INFO - NPU ACTIVE cycles: 5\nINFO - NPU total cycles: 9\n").pmu_cycle_counter == 9
    assert parse_counters("INFO - NPU ACTIVE: 5 cycles\n").normalised()["npu_active_cycles"] == 5


def test_measurement_carries_platform_and_log() -> None:
    m = parse_pmu_log(read("pmu_executorch_u85.log"), platform="FVP_Corstone_SSE-320", log_path="/x.log")
    assert m.source == "measured" and m.platform == "FVP_Corstone_SSE-320" and m.log_path == "/x.log"
    assert m.weight_decoder_active_cycles == 74180 and m.events["ETHOSU_PMU_WD_ACTIVE"] == 74180


def test_json_shape() -> None:
    j = parse_counters(read("pmu_core_software_u85.log")).as_json()
    assert set(j) == {"pmu_cycle_counter", "events", "inferences", "npu_active_cycles", "mac_active_cycles",
                      "weight_decoder_active_cycles", "ext_read_beats", "ext_write_beats", "npu_idle_cycles"}
    assert j["ext_read_beats"] is None


@pytest.mark.parametrize("text", ["", "Program complete, exiting.\nNPU delegations: 1 (1.00 per inference)\n"])
def test_no_counters_is_a_clear_error(text: str) -> None:
    with pytest.raises(ArtifactError, match="no Ethos-U PMU counters") as info:
        parse_counters(text, source="run.log")
    assert isinstance(info.value, ConditionError)
    assert str(info.value).startswith("run.log:")
