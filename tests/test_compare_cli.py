"""`condition compare --quick` end to end (both frontends, every technique, small subsets), then
again: the second run redoes nothing and writes the same report."""
from __future__ import annotations

import csv

import pytest

from condition.cli import main

from conftest import needs_fashion_mnist  # noqa: E402

pytestmark = [needs_fashion_mnist, pytest.mark.usefixtures("shared_ray")]


@pytest.mark.slow
def test_compare_quick_end_to_end_then_resume(tmp_path, capsys):
    out = tmp_path / "quick"
    assert main(["compare", "--quick", "--out", str(out)]) == 0
    first = capsys.readouterr()
    assert "12 cells" in first.err and "0 already done" in first.err
    assert first.err.count(": ok in ") == 12
    for name in ("report.md", "report.html", "results.csv", "results.json", "compare.json"):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "results.csv").open()))
    cells = [r for r in rows if r["chain"] != "float"]
    assert len(cells) == 12 and {r["status"] for r in cells} == {"ok"}
    assert {r["frontend"] for r in cells} == {"tf", "torch"}
    assert all(int(r["vela_npu_cycles"]) > 0 and int(r["vela_encoded_weight_bytes"]) > 0 for r in cells)
    assert all(0.0 < float(r["accuracy"]) <= 1.0 for r in rows)
    pruned = [r for r in cells if r["technique"] == "prune 95 %"]
    assert all(float(r["weight_sparsity"]) > 0.9 and float(r["encoded_weight_bytes_vs_baseline"]) < 0.2 for r in pruned)
    report = (out / "report.md").read_text()
    html = (out / "report.html").read_text()

    assert main(["compare", "--quick", "--out", str(out)]) == 0
    second = capsys.readouterr()
    assert "12 already done" in second.err and ": ok in " not in second.err
    assert (out / "report.md").read_text() == report
    assert (out / "report.html").read_text() == html
