"""Which records make up a comparison, and loading them back.

`condition compare` writes OUT/compare.json (the manifest: every cell with its row label, folder and
configuration hash) before it runs anything, so `condition report OUT` re-renders exactly the same
cells — including those an interrupted run has not reached yet — and nothing else that happens to
live in OUT. A folder without a manifest is read by scanning it for metrics records.
"""
from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condition.backend.atomic import write_json_atomic
from condition.backend.budget import Limits, judge
from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.backend.target import Target
from condition.compare.matrix import Cell
from condition.compare.recipe import record_chain_label
from condition.datasets import dataset_key
from condition.errors import ArtifactError, ConfigError
from condition.techniques import TECHNIQUE_NAMES

MANIFEST_NAME = "compare.json"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class Entry:
    """One cell of a comparison: its record if it has run, else None ("not run yet")."""

    label: str
    frontend: str
    run_dir: Path
    config_hash: str
    record: MetricsRecord | None
    techniques: tuple[str, ...] = ()
    model: str = ""
    dataset: str = ""
    target: Target = Target()
    seed: int = 0
    epochs: int = 0
    train_limit: int | None = None
    eval_limit: int | None = None

    @property
    def status(self) -> str:
        if self.record is None:
            return "not run"
        if self.record.config_hash and self.config_hash and self.record.config_hash != self.config_hash:
            return "not run"
        return self.record.verdict  # flagged: figures that cannot be right, shown as the problem, never as a result


@dataclass(frozen=True)
class Comparison:
    out: Path
    entries: tuple[Entry, ...]
    recipe: str = ""
    created: str = ""


def write_manifest(out: str | Path, cells: list[Cell], recipe: str, limits: Limits = Limits()) -> Path:
    out = Path(out)
    data = {
        "manifest_version": MANIFEST_VERSION,
        "recipe": recipe,
        "limits": limits.as_dict(),  # the budgets the report judges every cell by (a reused cell too)
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cells": [
            {
                "label": c.label,
                "frontend": c.config.frontend,
                "run_dir": str(c.config.run_dir().relative_to(out)),
                "config_hash": c.config.hash,
                "techniques": c.config.techniques,
                "model": c.config.model,
                "dataset": dataset_key(c.config.dataset, c.config.test_split, c.config.image_size),
                "target": c.config.target.as_dict(),
                "seed": c.config.seed,
                "epochs": c.config.epochs,
                "train_limit": c.config.train_limit,
                "eval_limit": c.config.eval_limit,
            }
            for c in cells
        ],
    }
    return write_json_atomic(out / MANIFEST_NAME, data)


def load_comparison(out: str | Path) -> Comparison:
    """The manifest's cells with their records, or every record found under `out`."""
    out = Path(out)
    if not out.is_dir():
        raise ConfigError("DIR", str(out), "no such folder", "give the --out folder of a `condition compare` run")
    manifest = out / MANIFEST_NAME
    if manifest.is_file():
        return _from_manifest(out, manifest)
    entries = []
    for path in sorted(out.rglob(RECORD_NAME)):
        if any(part.startswith(".") for part in path.relative_to(out).parts):
            continue  # work folders, caches
        record = MetricsRecord.read(path)
        entries.append(Entry(record_chain_label(record.techniques, record.options), record.frontend, path.parent, record.config_hash,
                             record, tuple(record.techniques), record.model, record.dataset, record.target, record.seed,
                             record.epochs))
    entries.sort(key=_scan_order)
    if not entries:
        raise ConfigError("DIR", str(out), f"no {MANIFEST_NAME} and no {RECORD_NAME} records under it",
                          "give the --out folder of a `condition compare` run")
    return Comparison(out, tuple(entries), recipe=f"records found under {out}")


def _scan_order(e: Entry) -> tuple[object, ...]:
    """Without a manifest: the int8 baseline first, single techniques, then longer chains."""
    ranks = [TECHNIQUE_NAMES.index(t) if t in TECHNIQUE_NAMES else 9 for t in e.techniques]
    return (e.frontend != "tf", e.frontend, len(e.techniques), ranks, e.label)


def _from_manifest(out: Path, manifest: Path) -> Comparison:
    try:
        data: dict[str, Any] = json.loads(manifest.read_text())
        cells = data["cells"]
        targets = [Target.from_dict(c["target"]) for c in cells]
    except (ValueError, KeyError, TypeError, ConfigError) as exc:
        raise ArtifactError(str(manifest), f"not a compare manifest ({exc})") from None
    limits = Limits.from_dict(data.get("limits"))
    entries = []
    for c, target in zip(cells, targets):
        run_dir = out / c["run_dir"]
        record = MetricsRecord.read(run_dir) if (run_dir / RECORD_NAME).is_file() else None
        if record is not None and record.status == "ok":  # a cell reused from a run under other limits is judged by these
            judge(record, limits)
        entries.append(Entry(c["label"], c["frontend"], run_dir, c["config_hash"], record, tuple(c["techniques"]), c["model"], c["dataset"],
                             target, c["seed"], c["epochs"], c.get("train_limit"), c.get("eval_limit")))
    return Comparison(out, tuple(entries), recipe=data.get("recipe", ""), created=data.get("created", ""))
