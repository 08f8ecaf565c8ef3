"""results.csv and results.json: one flat row per cell for spreadsheets and scripts.

Column names carry units and, for compiler figures, the `vela_` prefix (estimate); `fvp_` columns
are measured on an FVP; accuracy, sparsity and file sizes are measured.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from condition.compare.layout import header_items
from condition.compare.records import Comparison
from condition.compare.table import RATIO_METRICS, Section

COLUMNS = (
    "frontend", "technique", "chain", "options", "model", "dataset", "accelerator", "system_config", "memory_mode",
    "seed", "epochs", "train_limit", "eval_limit", "status", "error",
    "accuracy", "accuracy_kind", "accuracy_evaluator", "accuracy_images", "float_accuracy",
    "weight_sparsity", "max_unique_weights_per_layer", "artifact_kind", "artifact_bytes",
    "vela_original_weight_bytes", "vela_encoded_weight_bytes", "vela_npu_cycles", "vela_total_cycles", "vela_inference_ms",
    "vela_dram_bytes", "vela_flash_bytes", "vela_ops_on_npu", "vela_ops_on_cpu", "fvp_npu_active_cycles",
    "vela_sram_used_bytes", "vela_dram_used_bytes", "vela_flash_used_bytes", "file_scratch_bytes", "file_runtime_pool_bytes",
    *(f"{m}_vs_baseline" for m in RATIO_METRICS), "accuracy_minus_baseline",
    *(f"{m}_tf_over_torch" for m in RATIO_METRICS), "accuracy_tf_minus_torch",
    "seconds", "run_dir", "config_hash",
)


def result_rows(comparison: Comparison, sections: list[Section]) -> list[dict[str, Any]]:
    """One dict per cell, in section and row order, with every COLUMNS key."""
    limits = {str(e.run_dir): (e.train_limit, e.eval_limit, e.config_hash, e.techniques) for e in comparison.entries}
    rows = []
    for section in sections:
        t = section.target
        for row in section.rows:
            for fw in section.frontends:
                s = row.sides[fw]
                if s.status == "absent":
                    continue
                train_limit, eval_limit, config_hash, chain = limits.get(s.run_dir, (None, None, "", ()))
                if row.is_float:  # taken from another cell's record: not a run of its own
                    config_hash, chain = "", ()
                r = s.record
                vs = row.vs_baseline.get(fw, {})
                d: dict[str, Any] = {
                    "frontend": fw, "technique": row.label, "chain": "+".join(chain) or "float",
                    "options": json.dumps(r.options, sort_keys=True) if r is not None else "",
                    "model": section.model, "dataset": section.dataset, "accelerator": t.npu,
                    "system_config": t.system_config, "memory_mode": t.memory_mode,
                    "seed": section.seed, "epochs": section.epochs, "train_limit": train_limit, "eval_limit": eval_limit,
                    "status": s.status, "error": s.error,
                    "accuracy": s.accuracy, "accuracy_kind": s.accuracy_kind, "accuracy_evaluator": s.evaluator,
                    "accuracy_images": s.images, "float_accuracy": s.float_accuracy,
                    "weight_sparsity": s.sparsity, "max_unique_weights_per_layer": s.max_unique_values,
                    "artifact_kind": s.artifact_kind, "artifact_bytes": s.artifact_bytes,
                    "vela_original_weight_bytes": s.original_weight_bytes, "vela_encoded_weight_bytes": s.encoded_weight_bytes,
                    "vela_npu_cycles": s.npu_cycles, "vela_total_cycles": s.total_cycles, "vela_inference_ms": s.inference_ms,
                    "vela_dram_bytes": s.dram_bytes, "vela_flash_bytes": s.flash_bytes,
                    "vela_ops_on_npu": s.ops_on_npu, "vela_ops_on_cpu": s.ops_on_cpu,
                    "fvp_npu_active_cycles": s.fvp_npu_active_cycles,
                    "accuracy_minus_baseline": vs.get("accuracy"),
                    "accuracy_tf_minus_torch": row.tf_over_torch.get("accuracy"),
                    "seconds": s.seconds, "run_dir": _relative(s.run_dir, comparison), "config_hash": config_hash,
                }
                d.update(_footprint(r if s.status == "ok" else None))
                for m in RATIO_METRICS:
                    d[f"{m}_vs_baseline"] = vs.get(m)
                    d[f"{m}_tf_over_torch"] = row.tf_over_torch.get(m)
                rows.append(d)
    return rows


def _footprint(r: Any) -> dict[str, Any]:
    """Memory used (Vela estimate) and what the deployed file asks its runtime for (read from it)."""
    v, m = (r.vela, r.memory) if r is not None else (None, None)
    used = v is not None and v.sram_used_bytes is not None
    return {"vela_sram_used_bytes": v.sram_used_bytes if used else None, "vela_dram_used_bytes": v.dram_used_bytes if used else None,
            "vela_flash_used_bytes": (v.on_chip_flash_used_bytes or 0) + (v.off_chip_flash_used_bytes or 0) if used else None,
            "file_scratch_bytes": m.scratch_bytes + m.fast_scratch_bytes if m else None,
            "file_runtime_pool_bytes": m.planned_bytes if m else None}


def _relative(run_dir: str, comparison: Comparison) -> str:
    """Run folders relative to the compare folder, so the files stay valid when it moves."""
    path = Path(run_dir)
    return str(path.relative_to(comparison.out)) if run_dir and path.is_relative_to(comparison.out) else run_dir


def render_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row[k] is None else row[k]) for k in COLUMNS})
    return buf.getvalue()


def render_json(comparison: Comparison, rows: list[dict[str, Any]]) -> str:
    data = {
        "header": dict(header_items(comparison)),
        "sources": {"vela_*": "estimate (Vela compiler)", "fvp_*": "measured (FVP PMU counters)",
                    "file_*": "read from the deployed file (.pte memory plan and delegate scratch; Vela .tflite tensors)",
                    "accuracy, weight_sparsity, max_unique_weights_per_layer, artifact_bytes": "measured"},
        "baseline": "post-training-quant of the same frontend (ratios), tf/torch for the same technique",
        "cells": rows,
    }
    return json.dumps(data, indent=2, default=str) + "\n"
