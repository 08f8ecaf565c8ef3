"""Compile an int8 .tflite with Vela in-process and read its CSV outputs into a VelaEstimate
(the record's dataclass, defined in backend/metrics.py).

The parsers take a folder of Vela outputs, so the ExecuTorch side (whose Vela run happens inside
the Ethos-U backend and dumps the same CSVs) uses them unchanged.
"""
from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from condition.backend.atomic import atomic_folder
from condition.backend.output_log import captured_output
from condition.backend.metrics import LayerEstimate, VelaEstimate
from condition.backend.target import Target, vela_argv
from condition.backend.tflite_file import read_tflite
from condition.errors import StepError

log = logging.getLogger(__name__)

ETHOSU_CUSTOM_CODE = "ethos-u"


@dataclass(frozen=True)
class VelaCompileResult:
    estimate: VelaEstimate
    vela_tflite: Path
    summary_csv: Path
    per_layer_csv: Path | None
    log_path: Path
    seconds: float


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [row for row in csv.DictReader(f)]


def parse_summary_csv(path: str | Path) -> dict[str, str]:
    rows = _read_csv_rows(Path(path))
    if not rows:
        raise StepError("vela", str(path), "summary CSV has no data row")
    return rows[0]


def parse_per_layer_csv(path: str | Path) -> list[LayerEstimate]:
    layers = []
    for row in _read_csv_rows(Path(path)):
        layers.append(
            LayerEstimate(
                name=row.get("Name", "").strip(),
                operator=row.get("NNG Operator", row.get("Original Operator", "")).strip(),
                target=row.get("Target", "NPU").strip(),
                op_cycles=int(float(row.get("Op Cycles", 0) or 0)),
                npu_cycles=int(float(row.get("NPU", 0) or 0)),
                macs=int(float(row.get("MAC Count", 0) or 0)),
                mac_utilisation_pct=float(row.get("Util% (MAC)", 0) or 0),
            )
        )
    return layers


def _int(row: dict[str, str], key: str) -> int:
    try:
        return int(float(row.get(key, "0") or 0))
    except ValueError:
        return 0


def _kib_bytes(row: dict[str, str], key: str) -> int | None:
    """A `*_memory_used` / `arena_cache_size` column (KiB, as a float) in bytes; None when absent."""
    try:
        return round(float(row[key]) * 1024)
    except (KeyError, TypeError, ValueError):
        return None


def footprint_fields(row: dict[str, str]) -> dict[str, object]:
    """The VelaEstimate footprint fields of a summary row: peak use per memory, where the arena lives,
    and the SRAM cache (only a Dedicated_Sram mode has one; otherwise Vela writes an unused default)."""
    dedicated = row.get("memory_mode", "").startswith("Dedicated_Sram")
    return {**{f"{m}_used_bytes": _kib_bytes(row, f"{m}_memory_used") for m in ("sram", "dram", "on_chip_flash", "off_chip_flash")},
            "feature_map_storage_area": row.get("feature_map_storage_area", ""),
            "arena_cache_bytes": _kib_bytes(row, "arena_cache_size") if dedicated else None}


def estimate_from_csvs(
    summary_csv: str | Path,
    per_layer_csv: str | Path | None = None,
    ops_on_npu: int = 0,
    cpu_ops: list[str] | None = None,
) -> VelaEstimate:
    """Turn Vela's summary (and per-layer) CSV into a VelaEstimate."""
    row = parse_summary_csv(summary_csv)
    clock = float(row.get("core_clock", 0) or 0)
    total = _int(row, "cycles_total")
    layers = parse_per_layer_csv(per_layer_csv) if per_layer_csv and Path(per_layer_csv).is_file() else []
    cpu = list(cpu_ops or [])
    return VelaEstimate(
        accelerator=row.get("accelerator_configuration", "").lower().replace("_", "-"),
        system_config=row.get("system_config", ""),
        memory_mode=row.get("memory_mode", ""),
        clock_hz=clock,
        original_weight_bytes=_int(row, "total_original_weights"),
        encoded_weight_bytes=_int(row, "total_npu_encoded_weights"),
        npu_cycles=_int(row, "cycles_npu"),
        total_cycles=total,
        sram_bytes=_int(row, "sram_total_bytes"),
        dram_bytes=_int(row, "dram_total_bytes"),
        on_chip_flash_bytes=_int(row, "on_chip_flash_total_bytes"),
        off_chip_flash_bytes=_int(row, "off_chip_flash_total_bytes"),
        weights_storage_area=row.get("weights_storage_area", ""),
        macs=_int(row, "nn_macs"),
        inference_ms=(total / clock * 1000.0) if clock else float(row.get("inference_time", 0) or 0) * 1000.0,
        ops_on_npu=ops_on_npu,
        ops_on_cpu=len(cpu),
        cpu_ops=cpu,
        per_layer=layers,
        **footprint_fields(row),
    )


def find_vela_csvs(folder: str | Path) -> tuple[Path, Path | None]:
    """Locate Vela's `<name>_summary_<sys>.csv` and `<name>_per-layer.csv` in a folder."""
    folder = Path(folder)
    summaries = sorted(folder.rglob("*_summary_*.csv"), key=lambda p: p.stat().st_mtime)
    if not summaries:
        raise StepError("vela", str(folder), "no Vela summary CSV found")
    summary = summaries[-1]
    layer = sorted(summary.parent.glob("*_per-layer.csv"), key=lambda p: p.stat().st_mtime)
    return summary, (layer[-1] if layer else None)


def run_vela(argv: list[str], model: Path, log_path: Path, context: str = "") -> float:
    """Vela's `main(argv)` in-process, its console output in `log_path`; seconds taken. A StepError
    naming `model` (after `context`, e.g. the NPU of a sweep) unless Vela exits 0."""
    from ethosu.vela import vela as vela_main

    where = f"{context}: " if context else ""
    log.info("vela %s", " ".join(argv))
    start = time.perf_counter()
    try:
        with captured_output(log_path, append=False):
            rc = vela_main.main(argv)
    except SystemExit as exc:  # argparse errors
        rc = exc.code if isinstance(exc.code, int) else 2
    except Exception as exc:
        raise StepError("vela", str(model), f"{where}{type(exc).__name__}: {exc}") from None
    if rc != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise StepError("vela", str(model), f"{where}exit code {rc}: {tail[0]}")
    return time.perf_counter() - start


def compile_tflite(tflite: str | Path, target: Target, out_dir: str | Path) -> VelaCompileResult:
    """Run Vela on an int8 .tflite; outputs land in `out_dir`; raise StepError on failure."""
    tflite = Path(tflite)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    in_ops = read_tflite(tflite).operator_names
    log_path = out_dir / f"{tflite.stem}_vela.log"
    with atomic_folder(out_dir, existing="merge") as tmp:  # outputs appear beside the log only after success
        seconds = run_vela(vela_argv(tflite, tmp, target), tflite, log_path)
    vela_tflite = out_dir / f"{tflite.stem}_vela.tflite"
    summary, per_layer = find_vela_csvs(out_dir)
    out_ops = read_tflite(vela_tflite).operator_names
    cpu_ops = [op for op in out_ops if op != ETHOSU_CUSTOM_CODE]
    estimate = estimate_from_csvs(summary, per_layer, ops_on_npu=max(len(in_ops) - len(cpu_ops), 0), cpu_ops=cpu_ops)
    return VelaCompileResult(estimate, vela_tflite, summary, per_layer, log_path, seconds)
