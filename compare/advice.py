"""`condition advise` beside what the runs measured: the advice for each section's int8 baseline
cell (per frontend) and, per technique row, the predicted best case against the achieved figures,
so a reader sees whether the advice held.

`write_comparison_advice` runs after the cells (it compiles the baseline artifact with Vela for
every MAC size of the Target's family) and writes OUT/advice/<frontend>-<baseline hash>.json; the
report renders the section only where such a file exists, so it stays optional.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condition.backend.advise import Advice, technique_bound
from condition.compare.records import Comparison
from condition.compare.table import Row, Section, build_sections
from condition.errors import ArtifactError, ConditionError
from condition.techniques import DEFAULT_CHANNEL_SPARSITY, ChannelPruneConfig, ClusterConfig, PruneConfig, Structure

ADVICE_DIR = "advice"
ARTIFACT_KINDS = {"tf": "tflite", "torch": "tosa"}  # what Vela re-compiles from a baseline run folder
REACHED = 0.10  # within 10 % of the bound counts as reached


def advice_file(out: str | Path, frontend: str, config_hash: str) -> Path:
    return Path(out) / ADVICE_DIR / f"{frontend}-{config_hash}.json"


def _baseline(section: Section) -> Row | None:
    return next((r for r in section.rows if r.is_baseline), None)


def write_comparison_advice(comparison: Comparison) -> list[str]:
    """Advise on every finished baseline cell that has no advice yet; returns one line per cell that
    could not be advised (the comparison itself is never failed by this)."""
    from condition.backend.advise import advise
    from condition.backend.metrics import tool_versions
    from condition.backend.target import Target
    from condition.backend.vela_sweep import compile_family
    from condition.techniques import prune_policy

    problems = []
    for section in build_sections(comparison):
        base = _baseline(section)
        for fw in section.frontends if base else ():
            side = base.sides[fw]
            record = side.record
            if side.status != "ok" or record is None or not record.config_hash:
                continue
            path = advice_file(comparison.out, fw, record.config_hash)
            if path.is_file():
                continue
            art = record.artifact(ARTIFACT_KINDS.get(fw, ""))
            try:
                if art is None:
                    raise ArtifactError(side.run_dir, f"the baseline record lists no {ARTIFACT_KINDS.get(fw)} artifact")
                model = Path(side.run_dir) / art.path
                target = record.target if isinstance(record.target, Target) else Target.from_dict(record.target)
                info = {"path": str(model), "compiled": str(model), "kind": model.suffix.lstrip("."), "frontend": fw,
                        "model": record.model, "run_dir": side.run_dir, "config_hash": record.config_hash}
                path.parent.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryDirectory(dir=path.parent, prefix=".advise-") as tmp:
                    names = [(l.operator, l.name) for l in record.vela.per_layer] if record.vela else None
                    left_out = prune_policy(record.weights.layers, fw) if record.weights else None
                    advice = advise(compile_family(model, target, Path(tmp), names), target, info, versions=tool_versions(),
                                    prune_left_out=left_out)
                advice.write(path)
            except ConditionError as err:
                problems.append(f"advice for {fw} {section.model}: {err}")
    return problems


# ---- predicted vs achieved -------------------------------------------------------------------

@dataclass(frozen=True)
class AdviceRow:
    label: str  # the compare row
    technique: str
    predicted_cycles: int
    achieved_cycles: int | None
    predicted_weights: int
    achieved_weights: int | None
    verdict: str

    @property
    def cycles_ratio(self) -> float | None:
        """Achieved / predicted best case: 1 = the bound was reached, above 1 = fell short of it."""
        return self.achieved_cycles / self.predicted_cycles if self.achieved_cycles is not None and self.predicted_cycles else None


@dataclass(frozen=True)
class AdviceTable:
    frontend: str
    advice: Advice
    rows: tuple[AdviceRow, ...]
    predicted_order: tuple[str, ...]
    achieved_order: tuple[str, ...]


def technique_of(techniques: list[str], options: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The advise technique a single-technique compare row ran, with its parameters."""
    if len(techniques) != 1:
        return None
    name, o = techniques[0], options.get(techniques[0], {})
    if name == PruneConfig.name:
        s = float(o.get("sparsity", PruneConfig.sparsity))
        if o.get("structure") == Structure.TWO_FOUR.value:
            return ("2:4", {}) if s <= 0.5 else ("2:4 + prune", {"sparsity": s})
        return "prune", {"sparsity": s}
    if name == ClusterConfig.name:
        return "cluster", {"clusters": int(o.get("clusters", ClusterConfig.clusters))}
    if name == ChannelPruneConfig.name and o.get("channel_sparsity") is not None:
        return "channel-prune", {"channel_sparsity": float(o["channel_sparsity"])}
    return None


def _verdict(ratio: float | None) -> str:
    if ratio is None:
        return "not measured"
    if ratio < 1 - REACHED:
        return f"beat the estimate (×{ratio:.2f})"
    if ratio <= 1 + REACHED:
        return "reached the bound"
    return f"fell short (×{ratio:.2f} of the bound)"


def advice_tables(comparison: Comparison, section: Section) -> list[AdviceTable]:
    """One table per frontend whose baseline cell has an advice file."""
    base = _baseline(section)
    tables = []
    for fw in section.frontends if base else ():
        record = base.sides[fw].record
        path = advice_file(comparison.out, fw, record.config_hash) if record is not None and record.config_hash else None
        if path is None or not path.is_file():
            continue
        try:
            advice = Advice.read(path)
        except ConditionError:
            continue
        rows = []
        for row in section.rows:
            side = row.sides.get(fw)
            if row.is_float or row.is_baseline or side is None or side.status != "ok" or side.record is None:
                continue
            found = technique_of(side.record.techniques, side.record.options)
            if found is None:
                continue
            technique, params = found
            bound = technique_bound(advice.layers, advice.family, technique, advice.dense,
                                    sparsity=params.get("sparsity", advice.parameters.get("sparsity", 0.95)),
                                    clusters=params.get("clusters", advice.parameters.get("clusters", 16)),
                                    channel_sparsity=params.get("channel_sparsity", DEFAULT_CHANNEL_SPARSITY))
            if not bound.applicable:
                rows.append(AdviceRow(row.label, technique, bound.total_cycles, side.total_cycles, bound.encoded_weight_bytes,
                                      side.encoded_weight_bytes, "not expected to help here (" + bound.note + ")"))
                continue
            ratio = side.total_cycles / bound.total_cycles if side.total_cycles is not None and bound.total_cycles else None
            rows.append(AdviceRow(row.label, technique, bound.total_cycles, side.total_cycles, bound.encoded_weight_bytes,
                                  side.encoded_weight_bytes, _verdict(ratio)))
        predicted = tuple(r.label for r in sorted(rows, key=lambda r: r.predicted_cycles))
        achieved = tuple(r.label for r in sorted((r for r in rows if r.achieved_cycles is not None), key=lambda r: r.achieved_cycles or 0))
        tables.append(AdviceTable(fw, advice, tuple(rows), predicted, achieved))
    return tables


def all_advice(comparison: Comparison, sections: list[Section]) -> list[tuple[Section, AdviceTable]]:
    return [(s, t) for s in sections for t in advice_tables(comparison, s)]

