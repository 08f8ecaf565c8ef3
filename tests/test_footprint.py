"""Footprints (memory used, apart from traffic) read from Vela summary CSVs recorded from real runs,
and old records that have none still load."""
from __future__ import annotations

from pathlib import Path

from condition.backend.metrics import MetricsRecord
from condition.backend.vela import estimate_from_csvs
from condition.cli.summary import format_summary

DATA = Path(__file__).parent / "data"


def test_u55_dscnn_footprint_equals_velas_summary() -> None:
    # Vela 5.2.0, DS-CNN (tf, 28×28×1), U55-128 High_End_Embedded, Shared_Sram: "Total SRAM used 16.73 KiB",
    # "Total Off-chip Flash used 26.27 KiB" (the CSV keeps the exact KiB: 16.734375, 26.265625)
    est = estimate_from_csvs(DATA / "vela_u55_dscnn" / "model_int8_summary_Ethos_U55_High_End_Embedded.csv")
    assert (est.sram_used_bytes, est.dram_used_bytes, est.on_chip_flash_used_bytes, est.off_chip_flash_used_bytes) == (17136, 0, 0, 26896)
    assert (est.weights_storage_area, est.feature_map_storage_area, est.arena_cache_bytes) == ("Off-chip Flash", "SRAM", None)
    assert est.sram_bytes == 129828  # the traffic stays as it was, beside the footprint


def test_u85_weights_in_dram() -> None:
    est = estimate_from_csvs(DATA / "vela_u85_tiny" / "tiny_cpu_op_summary_Ethos_U85_SYS_DRAM_Mid.csv")
    assert (est.sram_used_bytes, est.dram_used_bytes, est.off_chip_flash_used_bytes) == (816, 27600, 0)
    assert (est.weights_storage_area, est.feature_map_storage_area) == ("DRAM", "SRAM")


def test_old_records_load_without_footprints() -> None:
    paths = sorted((DATA / "records").rglob("metrics.json"))
    assert paths
    for path in paths:
        record = MetricsRecord.read(path)
        assert record.memory is None and record.limits == {}
        if record.vela is not None:
            assert record.vela.sram_used_bytes is None
        assert "SRAM used" not in format_summary(record)
