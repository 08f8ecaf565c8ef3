"""One int8 model compiled by Vela for every MAC size of its NPU family, read back per layer.

`condition advise` needs more per layer than the metrics record keeps: the memory-access cycles
beside the NPU cycles (Vela's per-layer CSV), and, from Vela's debug database
(`--enable-debug-db`, `<name>_debug.xml`), the cycle breakdown (MAC, weight-decoder, weight vs
feature-map access cycles) with each layer's encoded weight bytes, weight format and input
channels. Both files are read here; the CSV alone is enough for a coarser reading.

Vela takes a .tflite (TF frontend) or the .tosa file the torch frontend keeps in `delegate/`
(the graph the Ethos-U backend handed to Vela), so neither framework is imported.

    compiles = compile_family(Path("model_int8.tflite"), Target.default_for("ethos-u85-128"), out)
"""
from __future__ import annotations

import csv
import dataclasses
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from condition.backend.atomic import atomic_folder
from condition.backend.target import Accelerator, Target, vela_argv
from condition.backend.vela import run_vela
from condition.errors import ArtifactError, StepError

log = logging.getLogger(__name__)

DEBUG_DB_FLAG = "--enable-debug-db"
INPUT_SUFFIXES = (".tflite", ".tosa")
# Vela's per-layer CSV names the memory-access-cycle columns by memory (only those in use appear).
MEMORY_COLUMNS = ("SRAM AC", "DRAM AC", "OnFlash AC", "OffFlash AC")
# Memory prefixes of the debug database's per-access-kind columns (e.g. DramWeights_ac).
DB_MEMORIES = ("Sram", "Dram", "OnChipFlash", "OffChipFlash", "lutram")


@dataclass(frozen=True)
class VelaLayer:
    """One row of Vela's per-layer figures for one compile (all cycles are Vela estimates).

    The breakdown fields are None when the compile has no debug database."""

    name: str
    operator: str
    target: str  # "NPU" or "CPU"
    op_cycles: int  # the layer's time: the slowest of compute and memory access
    npu_cycles: int  # compute: MAC array, output unit, commands
    memory_cycles: int  # slowest memory's access cycles
    mac_count: int
    mac_util_pct: float
    mac_cycles: int | None = None
    wd_cycles: int | None = None  # weight decoder
    weight_access_cycles: int | None = None  # weights and scales fetched from their memory
    feature_map_access_cycles: int | None = None
    weight_bytes: int | None = None  # NPU-encoded
    weight_format: str = ""  # "Default", "Fast", "Default|Sparse2_4", … ("" when no weights)
    ifm_channels: int | None = None


@dataclass(frozen=True)
class VelaCompile:
    """The model compiled for one accelerator configuration."""

    accelerator: str
    macs: int
    system_config: str
    memory_mode: str
    total_cycles: int
    npu_cycles: int
    encoded_weight_bytes: int
    original_weight_bytes: int
    layers: tuple[VelaLayer, ...]
    has_breakdown: bool
    folder: str = ""


def family_targets(target: Target) -> list[Target]:
    """Every MAC size of the target's NPU family, same system config, memory mode and .ini."""
    return [dataclasses.replace(target, accelerator=a) for a in Accelerator if a.family == target.family]


def _int(value: str | None) -> int:
    try:
        return int(float(value or 0))
    except ValueError:
        return 0


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k.strip(): (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(f)]


def read_debug_db(path: str | Path) -> dict[str, list[dict[str, str]]]:
    """Tables of Vela's `<name>_debug.xml` (CSV blocks inside CDATA) as lists of row dicts."""
    text = Path(path).read_text(errors="replace")
    tables = {}
    for m in re.finditer(r'<table name="(\w+)">\s*<!\[CDATA\[\n(.*?)\]\]>', text, re.S):
        rows = list(csv.reader(m.group(2).splitlines()))
        if rows:
            tables[m.group(1)] = [dict(zip(rows[0], r)) for r in rows[1:]]
    return tables


def _max_db(row: dict[str, str], kinds: tuple[str, ...]) -> int:
    return max((_int(row.get(f"{mem}{kind}_ac")) for mem in DB_MEMORIES for kind in kinds), default=0)


def _breakdown(db: dict[str, list[dict[str, str]]]) -> list[dict[str, object]]:
    """Per `perf` row (same order as the per-layer CSV): the debug tables joined on the layer id."""
    by_id = {name: {r.get("id"): r for r in db.get(name, [])} for name in ("perf_debug", "perf_debug_main", "perf_debug_wd")}
    out = []
    for perf in db.get("perf", []):
        i = perf.get("id")
        dbg, main, wd = (by_id[n].get(i, {}) for n in ("perf_debug", "perf_debug_main", "perf_debug_wd"))
        weight_bytes = _int(dbg.get("weight_total_bytes"))
        out.append({
            "name": perf.get("name", ""),
            "op_cycles": _int(perf.get("op_cycles")),
            "mac_cycles": _int(main.get("mac_cycles")) if main else None,
            "wd_cycles": _int(wd.get("wd_cycles")) if wd else 0,
            "weight_access_cycles": _max_db(dbg, ("Weights", "Scales")) if dbg else 0,
            "feature_map_access_cycles": _max_db(dbg, ("FeatureMap", "Lut")) if dbg else 0,
            "weight_bytes": weight_bytes if dbg else 0,
            "weight_format": dbg.get("weight_format", "") if weight_bytes else "",
            "ifm_channels": _int(dbg.get("ifm_shape_c")) if dbg.get("ifm_shape_c") else None,
        })
    return out


def read_compile(folder: str | Path) -> VelaCompile:
    """Read one compile's summary CSV, per-layer CSV and (when present) debug database."""
    from condition.backend.vela import parse_summary_csv

    folder = Path(folder)
    summaries = sorted(folder.glob("*_summary_*.csv"))
    layer_csvs = sorted(folder.glob("*_per-layer.csv"))
    if not summaries or not layer_csvs:
        raise StepError("vela", str(folder), "no Vela summary and per-layer CSV here (compile with --verbose-performance)")
    summary = parse_summary_csv(summaries[0])
    rows = _rows(layer_csvs[0])
    dbs = sorted(folder.glob("*_debug.xml"))
    extra = _breakdown(read_debug_db(dbs[0])) if dbs else []
    if extra and [e["name"] for e in extra] != [r.get("Name", "") for r in rows]:
        log.warning("%s: debug database rows do not match the per-layer CSV; breakdown ignored", folder)
        extra = []
    layers = []
    for i, row in enumerate(rows):
        breakdown = {k: v for k, v in extra[i].items() if k not in ("name", "op_cycles")} if extra else {}
        layers.append(VelaLayer(
            name=row.get("Name", ""),
            operator=row.get("NNG Operator") or row.get("Original Operator", ""),
            target=row.get("Target", "NPU"),
            op_cycles=_int(row.get("Op Cycles")),
            npu_cycles=_int(row.get("NPU")),
            memory_cycles=max((_int(row.get(c)) for c in MEMORY_COLUMNS), default=0),
            mac_count=_int(row.get("MAC Count")),
            mac_util_pct=float(row.get("Util% (MAC)") or 0),
            **breakdown,
        ))
    acc = summary.get("accelerator_configuration", "").lower().replace("_", "-")
    return VelaCompile(
        accelerator=acc,
        macs=int(acc.rsplit("-", 1)[1]) if acc[-1:].isdigit() else 0,
        system_config=summary.get("system_config", ""),
        memory_mode=summary.get("memory_mode", ""),
        total_cycles=_int(summary.get("cycles_total")),
        npu_cycles=_int(summary.get("cycles_npu")),
        encoded_weight_bytes=_int(summary.get("total_npu_encoded_weights")),
        original_weight_bytes=_int(summary.get("total_original_weights")),
        layers=tuple(layers),
        has_breakdown=bool(extra),
        folder=str(folder),
    )


def with_names(compile: VelaCompile, rows: list[tuple[str, str]]) -> VelaCompile:
    """Rows renamed by a run's metrics record ((operator, name) per per-layer row, the model's own
    layer names), when the record's rows are this compile's rows (same count and operators)."""
    if [op for op, _ in rows] != [l.operator for l in compile.layers]:
        return compile
    layers = tuple(dataclasses.replace(l, name=name) for l, (_, name) in zip(compile.layers, rows))
    return dataclasses.replace(compile, layers=layers)


def compile_one(model: Path, target: Target, out_dir: Path) -> VelaCompile:
    """Vela on `model` for `target` with the per-layer CSV and the debug database; only the
    figures are kept (CSVs, debug XML, log) in `out_dir`, which appears only after success."""
    with atomic_folder(out_dir) as keep:
        work = keep / ".vela-output"  # Vela's full output; only the CSVs and the debug XML stay
        work.mkdir()
        run_vela(vela_argv(model, work, target) + [DEBUG_DB_FLAG], model, keep / "vela.log", context=target.npu)
        for p in work.iterdir():
            if p.suffix in (".csv", ".xml"):
                os.replace(p, keep / p.name)
        shutil.rmtree(work)
    return read_compile(out_dir)


def check_input(model: Path) -> None:
    if not model.is_file():
        raise ArtifactError(str(model), "file not found")
    if model.suffix.lower() not in INPUT_SUFFIXES:
        raise ArtifactError(str(model), "Vela compiles an int8 .tflite or a .tosa file, not " + (model.suffix or "a file without suffix"))
    if model.suffix.lower() == ".tflite":
        from condition.backend.tflite_file import require_int8

        require_int8(model)


def compile_family(model: str | Path, target: Target, out_dir: str | Path,
                   names: list[tuple[str, str]] | None = None) -> list[VelaCompile]:
    """`model` compiled for every MAC size of `target`'s family into OUT_DIR/<accelerator>/; with
    `names` (see `with_names`) the rows carry the model's layer names instead of Vela's tensor names."""
    model, out_dir = Path(model), Path(out_dir)
    check_input(model)
    compiles = [compile_one(model, t, out_dir / t.npu) for t in family_targets(target)]
    return [with_names(c, names) for c in compiles] if names else compiles
