"""Rendering from recorded metrics files: tests/data/records holds the records (and manifest) of a
real `condition compare --quick` run on tiny subsets, both frontends, plus a second data set path
that does not exist (every cell of it failed). See tests/data/records/README.md."""
from __future__ import annotations

import base64
import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from condition.backend.metrics import MetricsRecord
from condition.cli import main
from condition.compare.records import MANIFEST_NAME, load_comparison
from condition.compare.report import write_report
from condition.compare.table import FLOAT_LABEL, build_sections, pareto_front

RECORDS = Path(__file__).parent / "data" / "records"
LABELS = ["post-training-quant", "qat", "prune 95 %", "prune 2:4", "cluster 16", "prune 95 % → cluster 16 → qat"]


@pytest.fixture()
def out(tmp_path: Path) -> Path:
    dest = tmp_path / "compare"
    shutil.copytree(RECORDS, dest)
    return dest


def good_section(sections):
    return next(s for s in sections if s.dataset == "fashion-mnist")


def test_records_load_through_the_manifest(out):
    comparison = load_comparison(out)
    statuses = [e.status for e in comparison.entries]
    assert statuses.count("ok") == 12 and statuses.count("failed") == 12
    assert {e.label for e in comparison.entries} == set(LABELS)


def test_table_rows_and_ratios_come_from_the_records(out):
    sections = build_sections(load_comparison(out))
    assert len(sections) == 2
    s = good_section(sections)
    assert [r.label for r in s.rows] == [FLOAT_LABEL, *LABELS]
    assert s.frontends == ("tf", "torch")
    for row in s.rows[1:]:
        tf, torch = row.sides["tf"], row.sides["torch"]
        assert tf.status == torch.status == "ok"
        rec_tf, rec_torch = MetricsRecord.read(tf.run_dir), MetricsRecord.read(torch.run_dir)
        assert tf.encoded_weight_bytes == rec_tf.vela.encoded_weight_bytes
        assert torch.total_cycles == rec_torch.vela.total_cycles
        assert tf.accuracy == rec_tf.accuracy_of("int8").value
        assert tf.artifact_kind == "vela_tflite" and torch.artifact_kind == "pte"
        assert row.tf_over_torch["npu_cycles"] == pytest.approx(rec_tf.vela.npu_cycles / rec_torch.vela.npu_cycles)
        assert row.tf_over_torch["accuracy"] == pytest.approx(tf.accuracy - torch.accuracy)
    base = s.row("post-training-quant")
    assert base.is_baseline and all(v == pytest.approx(1.0) for k, v in base.vs_baseline["torch"].items() if k != "accuracy")
    pruned = s.row("prune 95 %")
    assert pruned.vs_baseline["tf"]["encoded_weight_bytes"] == pytest.approx(
        pruned.sides["tf"].encoded_weight_bytes / base.sides["tf"].encoded_weight_bytes)
    assert pruned.vs_baseline["tf"]["encoded_weight_bytes"] < 0.2  # 95 % zeros: far fewer encoded bytes
    assert pruned.sides["torch"].sparsity > 0.9


def test_float_row_is_the_float_accuracy_the_runs_recorded(out):
    s = good_section(build_sections(load_comparison(out)))
    row = s.rows[0]
    assert row.is_float
    for fw in ("tf", "torch"):
        recorded = MetricsRecord.read(s.row("post-training-quant").sides[fw].run_dir).accuracy_of("float")
        assert row.sides[fw].accuracy == recorded.value and row.sides[fw].accuracy_kind == "float"
        assert row.sides[fw].total_cycles is None and row.sides[fw].encoded_weight_bytes is None  # no int8, no Vela


def test_failed_cells_show_as_failed_with_their_error(out):
    bad = next(s for s in build_sections(load_comparison(out)) if s.dataset != "fashion-mnist")
    assert {r.sides[f].status for r in bad.rows[1:] for f in ("tf", "torch")} == {"failed"}
    assert all("no-such-data.npz" in (r.sides["tf"].error or "") for r in bad.rows[1:])
    md = write_report(out).markdown.read_text()
    assert "*Every cell of this section failed" in md  # one sentence, not tables full of "failed"
    assert md.count("#### Accuracy, sparsity and size") == 1


def test_every_report_file_is_written_and_agrees(out):
    files = write_report(out)
    md = files.markdown.read_text()
    for needle in ["ethos-u85-128", "Ethos_U85_SYS_DRAM_Mid", "seed 0", "ethos-u-vela 5.1.0", "Vela estimate", "measured",
                   "## Failed cells", "no-such-data.npz", FLOAT_LABEL, *LABELS]:
        assert needle in md, needle
    rows = list(csv.DictReader(files.csv.open()))
    assert len(rows) == 24 + 2  # every cell, plus one float reference line per frontend of the good section
    tf_prune = next(r for r in rows if r["frontend"] == "tf" and r["technique"] == "prune 95 %" and r["status"] == "ok")
    record = MetricsRecord.read(out / tf_prune["run_dir"])  # relative to the compare folder
    assert int(tf_prune["vela_npu_cycles"]) == record.vela.npu_cycles
    assert int(tf_prune["vela_encoded_weight_bytes"]) == record.vela.encoded_weight_bytes
    data = json.loads(files.json.read_text())
    assert data["header"]["Target"].startswith("ethos-u85-128") and len(data["cells"]) == len(rows)
    assert {p.name for p in files.plots} == {"1-accuracy-vs-size.svg", "1-cycles.svg", "1-per-layer.svg"}
    for p in files.plots:
        assert f"plots/{p.name}" in md


def test_html_is_one_self_contained_file(out):
    html = write_report(out).html.read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing fetched from anywhere
    images = re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 3
    assert all(base64.b64decode(i).decode().startswith("<svg") for i in images)
    for needle in ["Vela estimate", "measured", "ethos-u85-128", "seed 0", "tensorflow 2.20", "torch 2.13", "Failed cells"]:
        assert needle in html, needle


def test_rendering_is_deterministic(out):
    first = write_report(out)
    texts = [first.markdown.read_text(), first.html.read_text(), first.csv.read_text()]
    second = write_report(out)
    assert [second.markdown.read_text(), second.html.read_text(), second.csv.read_text()] == texts


def test_cells_not_run_yet_are_shown_as_such(out):
    comparison = load_comparison(out)
    gone = next(e for e in comparison.entries if e.frontend == "torch" and e.label == "qat" and e.status == "ok")
    shutil.rmtree(gone.run_dir)
    s = good_section(build_sections(load_comparison(out)))
    assert s.row("qat").sides["torch"].status == "not run"
    assert s.row("qat").tf_over_torch == {}
    assert "| torch | qat | not run |" in write_report(out).markdown.read_text()


def test_a_folder_without_manifest_is_scanned(out):
    (out / MANIFEST_NAME).unlink()
    comparison = load_comparison(out)
    assert len(comparison.entries) == 24
    s = good_section(build_sections(comparison))
    labels = [r.label for r in s.rows]
    assert labels[:2] == [FLOAT_LABEL, "post-training-quant"] and sorted(labels[2:]) == sorted(LABELS[1:])
    assert labels[-1] == "prune 95 % → cluster 16 → qat"


def test_report_command(out, tmp_path, capsys):
    assert main(["report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "prune 95 % → cluster 16 → qat" in printed and (out / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("condition: error:") and len(err.splitlines()) == 1


def test_pareto_front_keeps_only_points_nothing_beats():
    points = [(500.0, 0.85, "ptq"), (46.0, 0.83, "p95"), (330.0, 0.84, "2:4"), (400.0, 0.87, "c16"), (30.0, 0.80, "chain")]
    assert [p[2] for p in pareto_front(points)] == ["chain", "p95", "2:4", "c16"]


def test_per_layer_panels_put_the_same_layer_of_tf_and_torch_side_by_side(out):
    from condition.compare.layers import layer_panels

    s = good_section(build_sections(load_comparison(out)))
    by_title = {p.title: p for p in layer_panels(s)}
    pruned = by_title["Per layer · prune 95 %"]
    params, tf_sparsity = pruned.columns.index("params"), pruned.columns.index("params") + 1
    assert [r[params].text for r in pruned.rows] == ["401,408", "131,072", "2,560"]  # the MLP's three layers, side by side
    assert pruned.rows[0][tf_sparsity].text == "95.0 %"  # tf sparsity of the first layer, from the record's exported weights
    assert [(r[2].text, r[3].text) for r in pruned.rows] == [("FullyConnected", "Conv2D")] * 3  # Vela's operator per side
    files = write_report(out)
    assert "#### Per layer · prune 95 %" in Path(files.markdown).read_text()
    assert "Per-layer figures, tf and torch side by side" in Path(files.html).read_text()
