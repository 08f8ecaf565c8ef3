"""Budgets: size parsing and its one-line errors, the fit check on real records, recipe keys, and a
compare report that judges reused cells by its own limits."""
from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from condition.backend.budget import Limits, format_size, judge, misfits, needs, parse_size
from condition.backend.metrics import MetricsRecord, VelaEstimate
from condition.cli import main
from condition.compare.recipe import parse_recipe
from condition.errors import ConfigError, RecipeError

RECORDS = Path(__file__).parent / "data" / "records"


@pytest.mark.parametrize("text, expected", [
    ("256KiB", 262144), ("2MiB", 2097152), ("1.5MB", 1500000), ("300kb", 300000), ("4096", 4096), (4096, 4096),
    ("64 KiB", 65536), ("1GiB", 1 << 30), ("12B", 12), (".5KiB", 512),
])
def test_sizes(text, expected) -> None:
    assert parse_size(text, "--sram-limit") == expected


@pytest.mark.parametrize("text, problem", [
    ("12XB", "unknown unit 'XB'"), ("256K", "unknown unit 'K'"), ("1.5B", "not a whole number of bytes"),
    ("0", "at least 1 byte"), ("-3KiB", "not a size"), ("", "not a size"), ("KiB", "not a size"), (True, "not a size"),
])
def test_bad_sizes_name_the_option(text, problem) -> None:
    with pytest.raises(ConfigError, match=problem) as err:
        parse_size(text, "--flash-limit")
    assert str(err.value).startswith("--flash-limit=") and "\n" not in str(err.value)


def test_format_size() -> None:
    assert [format_size(n) for n in (900, 262144, 319488, 2097152)] == ["900 B", "256 KiB", "312 KiB", "2 MiB"]


def test_cli_size_error_is_one_line(capsys) -> None:
    assert main(["tf", "post-training-quant", "--sram-limit", "256KB2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["condition: error: --sram-limit='256KB2': not a size (write e.g. 256KiB, 2MiB, 1.5MB or plain bytes)"]


def _dense_tf() -> MetricsRecord:
    record = MetricsRecord.read(next((RECORDS / "tf" / "mlp").glob("post-training-quant-*")))
    # a record written before footprints: give it the ones Vela's summary would have
    return dataclasses.replace(record, vela=dataclasses.replace(record.vela, sram_used_bytes=319488, on_chip_flash_used_bytes=4096))


def test_misfits_say_figure_limit_and_source() -> None:
    record = _dense_tf()
    flash = record.artifact("vela_tflite").bytes
    assert needs(record).sram_bytes == 319488 and needs(record).flash_bytes == flash
    assert misfits(record, Limits(sram_bytes=256 * 1024)) == ["does not fit: SRAM 312 KiB > 256 KiB (Vela estimate)"]
    assert misfits(record, Limits(sram_bytes=319488, flash_bytes=flash)) == []  # equal fits
    assert misfits(record, Limits(max_ms=record.vela.inference_ms / 2))[0].startswith("does not fit: inference time")
    sram_only = dataclasses.replace(record, vela=dataclasses.replace(record.vela, memory_mode="Sram_Only"))
    assert needs(sram_only).sram_bytes == 319488 + 4096  # Vela reports Sram_Only's weights as on-chip flash
    old = MetricsRecord.read(next((RECORDS / "tf" / "mlp").glob("post-training-quant-*")))
    assert misfits(old, Limits(sram_bytes=1)) == ["does not fit: SRAM unknown (the record has no figure to compare with 1 B)"]


def test_judge_replaces_earlier_misfits_and_keeps_other_problems() -> None:
    record = _dense_tf()
    record.problems = ["int8 accuracy 0.100 is near chance", "does not fit: SRAM 312 KiB > 8 KiB (Vela estimate)"]
    judge(record, Limits(flash_bytes=1000))
    assert record.problems[0].startswith("int8 accuracy") and len(record.problems) == 2
    assert record.problems[1].startswith("does not fit: flash") and record.limits == {"flash_limit_bytes": 1000}
    assert MetricsRecord.from_dict(json.loads(json.dumps(record.to_dict()))).limits == {"flash_limit_bytes": 1000}
    judge(record, Limits())
    assert record.problems == ["int8 accuracy 0.100 is near chance"] and record.limits == {}


def test_limits_are_not_in_the_run_identity() -> None:
    from condition.run import RunConfig

    a = RunConfig("tf", ())
    assert dataclasses.replace(a, limits=Limits(sram_bytes=1, max_ms=0.5)).hash == a.hash


def test_recipe_limit_keys() -> None:
    base = {"chains": [{"steps": ["post-training-quant"]}]}
    recipe = parse_recipe({**base, "sram_limit": "256KiB", "flash_limit": 2_000_000}, "r.toml")
    assert recipe.limits == Limits(sram_bytes=262144, flash_bytes=2_000_000)
    with pytest.raises(RecipeError, match=r"recipe r.toml: flash_limit: not a size"):
        parse_recipe({**base, "flash_limit": "2Mb2"}, "r.toml")


def test_compare_report_judges_cells_by_its_limits(tmp_path) -> None:
    from condition.compare.records import load_comparison

    out = tmp_path / "records"
    shutil.copytree(RECORDS, out)
    manifest = json.loads((out / "compare.json").read_text())
    (out / "compare.json").write_text(json.dumps({**manifest, "limits": {"flash_limit_bytes": 100_000}}))
    entries = load_comparison(out).entries
    over = [e for e in entries if e.status == "flagged" and any(p.startswith("does not fit: flash") for p in e.record.problems)]
    fits = [e for e in entries if e.status == "ok"]
    assert over and fits  # dense MLPs (~550 KB) do not fit 100 kB, pruned Vela .tflites do
    assert all(e.record.artifact("vela_tflite" if e.frontend == "tf" else "pte").bytes <= 100_000 for e in fits)


def test_report_memory_panel_marks_figures_over_the_limit(tmp_path) -> None:
    from condition.compare.layout import panels
    from condition.compare.records import load_comparison
    from condition.compare.table import build_sections

    out = tmp_path / "records"
    shutil.copytree(RECORDS, out)
    for path in out.rglob("metrics.json"):  # footprints as a run writes them now
        d = json.loads(path.read_text())
        if d.get("vela"):
            d["vela"].update(sram_used_bytes=20480 if d["frontend"] == "tf" else 8192, feature_map_storage_area="SRAM")
            d["memory"] = {"artifact": "pte" if d["frontend"] == "torch" else "vela_tflite", "planned_bytes": 4000, "scratch_bytes": 8192}
            path.write_text(json.dumps(d))
    manifest = json.loads((out / "compare.json").read_text())
    (out / "compare.json").write_text(json.dumps({**manifest, "limits": {"sram_limit_bytes": 16384}}))
    comparison = load_comparison(out)
    section = next(s for s in build_sections(comparison) if any(side.status == "ok" for r in s.rows for side in r.sides.values()))
    panel = next(p for p in panels(section) if p.title.startswith("Memory footprint"))
    assert panel.title == "Memory footprint — limits: SRAM ≤ 16 KiB" and panel.columns[:3] == ["technique", "tf", "torch"]
    texts = [[v.text for v in row] for row in panel.rows]
    assert any(row[1] == "20 KiB > 16 KiB" and row[2] == "8 KiB" for row in texts), texts
    over = [e for e in comparison.entries if e.status == "flagged" and e.frontend == "tf"]
    assert over and all("does not fit: SRAM 20 KiB > 16 KiB" in e.record.reason for e in over)
