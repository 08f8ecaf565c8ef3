"""The small table a single run prints: what was measured, what was estimated, and where files are."""
from __future__ import annotations

from pathlib import Path

from condition.backend.metrics import MetricsRecord, VelaEstimate

# The FVP counters of a record (FvpMeasurement fields) and how tables name them; `condition fvp parse` too.
FVP_COUNTERS: tuple[tuple[str, str], ...] = (
    ("npu_active_cycles", "NPU active cycles"),
    ("mac_active_cycles", "MAC active cycles"),
    ("weight_decoder_active_cycles", "weight decoder active cycles"),
    ("ext_read_beats", "external read beats"),
    ("ext_write_beats", "external write beats"),
    ("npu_idle_cycles", "NPU idle cycles"),
)


def _bytes(n: int | None) -> str:
    if n is None:
        return "–"
    return f"{n:,} B ({n / 1024:.1f} KiB)"


def _int(n: int | None) -> str:
    return "–" if n is None else f"{n:,}"


def _ops(v: VelaEstimate) -> str:
    """'7 / 1 (SOFTMAX)': ops on the NPU / on the CPU, naming the CPU ops."""
    return f"{v.ops_on_npu} / {v.ops_on_cpu}" + (f" ({', '.join(v.cpu_ops)})" if v.cpu_ops else "")


def summary_rows(record: MetricsRecord) -> list[tuple[str, str, str]]:
    """(figure, value, source) rows; source says measured or Vela estimate."""
    rows: list[tuple[str, str, str]] = []
    for acc in record.accuracy:
        rows.append((f"accuracy ({acc.kind})", f"{acc.value:.4f} on {acc.images:,} images", f"measured: {acc.evaluator}"))
    if record.weights is not None:
        w = record.weights
        rows.append(("weight sparsity", f"{w.sparsity:.3f} of {w.params:,} weights", "measured on exported int8 weights"))
        rows.append(("unique weights / layer (max)", f"{w.max_unique_values:,}", "measured on exported int8 weights"))
    for stage in getattr(record, "stage_weights", []):  # earlier stages of a chain, each exported and counted
        rows.append((f"after {stage.stage}: sparsity / unique", f"{stage.sparsity:.3f} / {stage.max_unique_values:,}",
                     "measured on exported int8 weights"))
    for art in record.artifacts:
        rows.append((f"{art.kind} size", _bytes(art.bytes), "measured (file size)"))
    v = record.vela
    if v is not None and v.source == "pte":  # read from a compiled .pte: no compiler model to quote
        rows += [
            ("NPU-encoded weights", _bytes(v.encoded_weight_bytes), "read from the .pte's Vela weight block"),
            ("Ethos-U delegates / CPU ops", _ops(v), "read from the .pte"),
        ]
    elif v is not None:
        rows += [
            ("original weights", _bytes(v.original_weight_bytes), "Vela estimate"),
            ("NPU-encoded weights", _bytes(v.encoded_weight_bytes), "Vela estimate"),
            ("NPU cycles", _int(v.npu_cycles), "Vela estimate"),
            ("total cycles", _int(v.total_cycles), "Vela estimate"),
            ("inference time", f"{v.inference_ms:.3f} ms", "Vela estimate"),
            ("SRAM / DRAM traffic", f"{v.sram_bytes:,} / {v.dram_bytes:,} B", "Vela estimate"),
            ("flash traffic (on/off chip)", f"{v.on_chip_flash_bytes:,} / {v.off_chip_flash_bytes:,} B", "Vela estimate"),
            ("MACs", _int(v.macs), "Vela estimate"),
            ("ops on NPU / CPU", _ops(v), "compiler placement"),
        ]
        rows += footprint_rows(v)
    rows += artifact_memory_rows(record)
    if getattr(record, "limits", None) and not any(p.startswith("does not fit") for p in record.problems):
        from condition.backend.budget import Limits

        rows.append(("fits", Limits.from_dict(record.limits).describe(), "judged by the limits given"))
    f = record.fvp
    if f is not None:
        for key, label in FVP_COUNTERS:
            if (value := getattr(f, key)) is not None:
                rows.append((label, _int(value), f"measured: {f.platform or 'FVP'}"))
    return rows


def footprint_rows(v: VelaEstimate) -> list[tuple[str, str, str]]:
    """Memory the deployment occupies (Vela's allocation), apart from the traffic rows; none for
    records written before it was recorded."""
    if v.sram_used_bytes is None:
        return []
    rows = [("SRAM used", _bytes(v.sram_used_bytes), "Vela estimate"), ("DRAM used", _bytes(v.dram_used_bytes), "Vela estimate"),
            ("flash used (on/off chip)", f"{v.on_chip_flash_used_bytes or 0:,} / {v.off_chip_flash_used_bytes or 0:,} B",
             "Vela estimate"),
            ("weights in / arena in", f"{v.weights_storage_area or '–'} / {v.feature_map_storage_area or '–'}",
             f"Vela placement ({v.memory_mode})")]
    if v.arena_cache_bytes is not None:
        rows.append(("SRAM cache for the arena", _bytes(v.arena_cache_bytes), f"Vela ({v.memory_mode})"))
    return rows


def artifact_memory_rows(record: MetricsRecord) -> list[tuple[str, str, str]]:
    """What the deployed artifact asks its runtime for, read from the file."""
    m = getattr(record, "memory", None)
    if m is None:
        return []
    if m.artifact == "pte":
        return [("method allocator pool ≥", _bytes(m.planned_bytes), "read from the .pte (memory plan)"),
                ("scratch pool (Ethos-U)", _bytes(m.scratch_bytes), "read from the .pte (delegate scratch_size)")]
    rows = [("Vela arena (scratch)", _bytes(m.scratch_bytes), "read from the Vela .tflite")]
    if m.fast_scratch_bytes:
        rows.append(("Vela fast scratch", _bytes(m.fast_scratch_bytes), "read from the Vela .tflite"))
    return rows + [("TFLM tensor arena ≥", _bytes(m.planned_bytes), "read from the Vela .tflite (tensors, 16 B aligned)")]


def format_summary(record: MetricsRecord, run_dir: Path | None = None) -> str:
    what = "existing artifact" if record.frontend == "measure" else record.technique_label
    head = f"{record.frontend} {what} · {record.model} · {record.dataset or 'no data set'} · {record.target.label()}"
    if record.status != "ok":
        return f"{head}\nFAILED: {record.error}"
    rows = summary_rows(record)
    w0 = max((len(r[0]) for r in rows), default=10)
    w1 = max((len(r[1]) for r in rows), default=10)
    lines = [head, f"{'figure':<{w0}}  {'value':<{w1}}  source", f"{'-' * w0}  {'-' * w1}  {'-' * 6}"]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    for note in record.notes:
        lines.append(f"note: {note}")
    for problem in record.problems:
        lines.append(f"FLAGGED: {problem}")
    if run_dir is not None:
        lines.append(f"run folder: {run_dir}")
    return "\n".join(lines)
