"""Which memory mode and system config fit: the dense int8 model compiled by Vela under every memory
mode and system config of the Target's NPU family, each read for its footprint and cycles.

What fits is judged as a run is (backend/budget.py): Vela's SRAM use against --sram-limit, the
bytes of Vela's output (command stream, weights, graph: what goes to flash) against --flash-limit.
"Cheapest" is the fitting configuration that needs the least SRAM (on-chip SRAM is the dear memory
on these systems), then the shortest inference; the fastest that fits (inference time at each system
config's own clock, not cycles) is named beside it.

    fits = compile_modes(Path("model_int8.tflite"), Target.default_for("ethos-u85-128"), out, limits)
"""
from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condition.backend.atomic import atomic_folder
from condition.backend.budget import Limits, excess, misfits_of, needs_of
from condition.backend.target import MEMORY_MODES, SYSTEM_CONFIGS, Target, vela_argv
from condition.backend.vela import estimate_from_csvs, find_vela_csvs, run_vela
from condition.errors import ConfigError, StepError


@dataclass(frozen=True)
class ModeFit:
    """One system config × memory mode: what the model occupies there and how fast it runs (Vela estimates)."""

    system_config: str
    memory_mode: str
    sram_bytes: int  # the SRAM it needs (Vela's SRAM use; Sram_Only: with the weights)
    flash_used_bytes: int  # Vela's on- plus off-chip flash use (what the NPU reads from flash)
    dram_used_bytes: int
    model_bytes: int  # Vela's output file: what the application stores in flash
    weights_area: str
    arena_area: str
    total_cycles: int
    inference_ms: float
    misfit: str = ""  # "does not fit: …" ("" fits, or no limits given)
    source: str = "estimate"

    @property
    def fits(self) -> bool:
        return not self.misfit


def mode_targets(target: Target) -> list[Target]:
    """Every system config × memory mode Vela's built-in .ini offers the Target's NPU (its own .ini's: only the Target)."""
    if target.vela_config is not None:
        return [target]
    out = []
    for system_config in SYSTEM_CONFIGS[target.family]:
        for mode in MEMORY_MODES:
            try:
                out.append(dataclasses.replace(target, system_config=system_config, memory_mode=mode))
            except ConfigError:  # a mode this NPU lacks (U55 has no Dedicated_Sram)
                continue
    return out


def compile_mode(model: Path, target: Target, out_dir: Path, limits: Limits) -> ModeFit:
    """Vela on `model` for one system config and memory mode; only its CSVs and log stay in `out_dir`."""
    with atomic_folder(out_dir) as keep:
        work = keep / ".vela-output"
        work.mkdir()
        run_vela(vela_argv(model, work, target), model, keep / "vela.log", context=f"{target.system_config} {target.memory_mode}")
        outputs = sorted(work.glob("*_vela.tflite"))
        model_bytes = outputs[0].stat().st_size if outputs else 0
        for p in work.iterdir():
            if p.suffix == ".csv":
                os.replace(p, keep / p.name)
        shutil.rmtree(work)
    if not model_bytes:
        raise StepError("vela", str(model), f"{target.system_config} {target.memory_mode}: no Vela output file")
    est = estimate_from_csvs(find_vela_csvs(out_dir)[0])
    need = needs_of(est, model_bytes)
    sram_only = target.memory_mode == "Sram_Only"  # Vela reports the SRAM-resident weights as On-chip Flash: counted as SRAM
    return ModeFit(target.system_config, target.memory_mode, need.sram_bytes or 0,
                   (0 if sram_only else est.on_chip_flash_used_bytes or 0) + (est.off_chip_flash_used_bytes or 0),
                   est.dram_used_bytes or 0, model_bytes, "SRAM" if sram_only else est.weights_storage_area,
                   est.feature_map_storage_area, est.total_cycles, est.inference_ms, "; ".join(misfits_of(need, limits)))


def compile_modes(model: str | Path, target: Target, out_dir: str | Path,
                  limits: Limits = Limits()) -> tuple[list[ModeFit], list[str]]:
    """`model` under every system config and memory mode of the family, into OUT_DIR/<system config>/<mode>/;
    also the combinations Vela refuses as a configuration (e.g. a Dedicated_Sram arena in a flash-only system)."""
    model, out_dir = Path(model), Path(out_dir)
    fits, refused = [], []
    for t in mode_targets(target):
        try:
            fits.append(compile_mode(model, t, out_dir / t.system_config / t.memory_mode, limits))
        except StepError as err:
            if "ConfigOptionError" not in err.problem:
                raise
            refused.append(err.problem.replace("ConfigOptionError: ", "").replace("'Error: ", "").rstrip("'"))
    return fits, refused


def cheapest(fits: list[ModeFit]) -> ModeFit | None:
    """The fitting configuration with the least SRAM, then the shortest inference (see the module docstring)."""
    ok = [f for f in fits if f.fits]
    return min(ok, key=lambda f: (f.sram_bytes, f.inference_ms)) if ok else None


def fastest(fits: list[ModeFit]) -> ModeFit | None:
    """The fitting configuration with the shortest inference (system configs differ in clock), then the least SRAM."""
    ok = [f for f in fits if f.fits]
    return min(ok, key=lambda f: (f.inference_ms, f.sram_bytes)) if ok else None


def modes_document(fits: list[ModeFit], refused: list[str], limits: Limits) -> dict[str, Any]:
    """The JSON form (OUT/advise/…/memory_modes.json and `advise --json`'s `memory_modes`)."""
    best, quick = cheapest(fits), fastest(fits)
    return {"limits": limits.as_dict(), "rule": " ".join(__doc__.split("\n\n")[1].split()),
            "cheapest": dataclasses.asdict(best) if best else None, "fastest": dataclasses.asdict(quick) if quick else None,
            "modes": [dataclasses.asdict(f) for f in fits], "refused_by_vela": refused, "source": "estimate"}
