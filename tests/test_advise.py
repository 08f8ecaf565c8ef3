"""`condition advise` on Vela figures recorded from real runs of both frontends
(tests/data/vela/advise, see its README): the seed MLP dense is weight-bound on U85-128 and
U55-128 and MAC-bound once pruned, the technique bounds follow the stated rules, 2:4 eligibility
follows what Vela can use; plus the command on real files and the compare report section."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from condition.backend.advise import ADVICE_VERSION, RULES, Advice, advise, classify, technique_bound
from condition.backend.target import Target
from condition.backend.vela_sweep import read_compile
from condition.errors import ArtifactError

DATA = Path(__file__).parent / "data" / "vela" / "advise"


def compiles(case: str, family: str | None = None):
    return [read_compile(f) for f in sorted((DATA / case).iterdir()) if f.is_dir() and (family is None or f"-{family}-" in f.name)]


def advice_for(case: str, npu: str, **kw) -> Advice:
    target = Target.default_for(npu)
    return advise(compiles(case, target.family), target, {"path": case}, **kw)


# ---- the seed notebook's judgement ------------------------------------------------------------

@pytest.mark.parametrize("case,npu", [("tf-mlp-dense", "ethos-u85-128"), ("tf-mlp-dense", "ethos-u55-128"),
                                      ("torch-mlp-dense", "ethos-u85-128"), ("torch-mlp-dense", "ethos-u55-128")])
def test_dense_mlp_is_weight_bound(case: str, npu: str) -> None:
    a = advice_for(case, npu)
    assert a.bound == "weight" and a.verdict.startswith("weight-bound")
    assert [l.bound for l in a.layers] == ["weight"] * 3  # fused ReLUs have no cycles of their own
    assert sum(l.share for l in a.layers) == pytest.approx(1.0)
    # The NPU computes for a fraction of the time; the rest is weights coming in.
    assert a.dense["npu_cycles"] < 0.35 * a.dense["total_cycles"]
    assert all(l.weight_cycles > 2 * l.npu_cycles for l in a.layers[:2])
    best = a.techniques[0]
    assert best.technique == ("2:4 + prune" if a.family == "u85" else "prune")
    prune = a.technique("prune")
    assert prune.total_cycles == a.dense["npu_cycles"]  # pruning: down to the NPU-cycle floor
    assert prune.cycles_vs_dense < 0.35


@pytest.mark.parametrize("case,npu", [("tf-mlp-pruned95", "ethos-u85-128"), ("tf-mlp-pruned95", "ethos-u55-128"),
                                      ("torch-mlp-pruned95", "ethos-u85-128"), ("torch-mlp-pruned95", "ethos-u55-128")])
def test_pruned_mlp_is_mac_bound(case: str, npu: str) -> None:
    a = advice_for(case, npu)
    assert a.bound == "mac" and a.verdict.startswith("MAC-bound")
    assert max(a.layers, key=lambda l: l.share).bound == "mac"
    if case.startswith("tf-"):  # tfmot prunes every layer to 95 %: nothing weight-bound is left
        assert all(l.bound == "mac" for l in a.layers if l.share > 0.1)
        assert a.technique("prune").cycles_vs_dense > 0.95  # more zeros no longer help
        assert a.technique("cluster").cycles_vs_dense > 0.95
    else:  # the seed's global L1 pruning left fc2 83 % sparse: on U55 (weights in flash) it is still weight-bound
        fc2 = a.layers[1]
        assert fc2.bound == ("weight" if a.family == "u55" else "mac")
        assert a.technique("prune").cycles_vs_dense < 1.0
    # MAC-bound: fewer channels (fewer MACs) go furthest, on every NPU
    assert a.techniques[0].technique == "channel-prune" and a.technique("channel-prune").cycles_vs_dense < 0.5
    assert "MAC-bound" in a.technique("channel-prune").note
    if a.family == "u85":  # of the zero-making techniques, only the MAC array skipping 2:4 zeros goes further
        assert a.techniques[1].technique.startswith("2:4") and a.technique("2:4").cycles_vs_dense == pytest.approx(0.5, abs=0.02)
    else:
        assert not a.technique("2:4").applicable and a.techniques[-1].technique.startswith("2:4")


def test_the_mac_sweep_is_evidence_not_the_decision() -> None:
    """Arm's test on the sweep: the dense MLP's cycles do not move from 128 to 256 MACs. The pruned
    MLP (MAC-bound by the breakdown) does not move either: an FC at batch 1 fills ~2 % of the array."""
    dense, pruned = advice_for("tf-mlp-dense", "ethos-u85-128"), advice_for("tf-mlp-pruned95", "ethos-u85-128")
    assert [s["macs"] for s in dense.sweep] == [128, 256, 512, 1024, 2048]
    assert all(l.more_macs_ratio == pytest.approx(1.0, abs=0.01) for l in dense.layers)
    assert pruned.layers[0].bound == "mac" and pruned.layers[0].more_macs_ratio == pytest.approx(1.0, abs=0.01)
    assert "more MACs do not help" in pruned.layers[0].evidence
    assert set(dense.layers[0].sweep_cycles) == {s["accelerator"] for s in dense.sweep}
    assert "ethos-u85-2048" in dense.verdict  # the verdict names what more MACs would give


# ---- the bounds follow the rules, derived from the rows ---------------------------------------

def test_bounds_follow_the_rules_on_the_rows() -> None:
    a = advice_for("tf-mlp-dense", "ethos-u85-128")
    rows = {l.name.split(";")[0]: l for l in a.layers}
    fc1 = rows["mlp/dense/MatMul"]
    assert (fc1.op_cycles, fc1.npu_cycles, fc1.weight_cycles, fc1.weight_bytes, fc1.ifm_channels) == (123598, 36722, 123598, 405008, 784)

    def expected(mac_f: float, weight_f: float, eligible_only: bool = False) -> int:
        total = 0
        for l in a.layers:
            m, w = (mac_f, weight_f) if (l.two_four_eligible or not eligible_only) else (1.0, 1.0)
            total += min(l.op_cycles, max(round(l.npu_cycles * m), l.feature_map_cycles, round(l.weight_cycles * w)))
        return total

    assert a.technique("prune").total_cycles == expected(1.0, 1 - 0.95) == 50518
    assert a.technique("cluster").total_cycles == expected(1.0, 0.5) == 82323  # 16 clusters: 4 bits of 8
    assert a.technique("2:4").total_cycles == expected(0.5, 20 / 32, eligible_only=True)
    assert a.technique("2:4 + prune").total_cycles == 18361 + 6638 + 260  # eligible: half the NPU compute
    assert a.technique("prune").encoded_weight_bytes == pytest.approx(a.dense["encoded_weight_bytes"] * 0.05, abs=3)
    eight = technique_bound(a.layers, a.family, "cluster", a.dense, clusters=8)
    assert eight.encoded_weight_bytes == pytest.approx(a.dense["encoded_weight_bytes"] * 3 / 8, abs=3)
    assert technique_bound(a.layers, a.family, "cluster", a.dense, clusters=64).note.startswith("64 clusters")
    assert all(t.source == "estimate" and t.rule == RULES[t.technique] for t in a.techniques)
    ranked = [t.total_cycles for t in a.techniques]
    assert ranked == sorted(ranked)


def test_two_four_eligibility_follows_vela() -> None:
    """Depthwise, 1 or 6 input channels: no; Conv/FC with a multiple of 4: yes (tf and torch)."""
    for case in ("tf-dwcnn", "torch-dwcnn"):
        a = advice_for(case, "ethos-u85-128")
        weighted = [l for l in a.layers if l.weight_bytes]
        convs = {l.ifm_channels: l.two_four_eligible for l in weighted if "Depthwise" not in l.operator and l.operator == "Conv2D"}
        assert convs[1] is False and convs[6] is False, case  # stem (1 channel) and the conv after the 16 → 6 pointwise
        assert convs[16] is True and convs[32] is True, case
        depthwise = [l for l in weighted if "Depthwise" in l.operator]
        assert depthwise and all(l.two_four_eligible is False and l.two_four_reason == "depthwise" for l in depthwise)
        assert "6 input channels" in next(l.two_four_reason for l in weighted if l.ifm_channels == 6)
        helped = set(a.technique("2:4").layers_helped)
        assert helped and not helped & {l.name for l in weighted if not l.two_four_eligible}
    u55 = advice_for("tf-mlp-dense", "ethos-u55-128")
    assert {l.two_four_eligible for l in u55.layers} == {None}


def test_per_layer_csv_alone_still_classifies(tmp_path: Path) -> None:
    """Without Vela's debug database the CSV's NPU vs memory-access cycles decide; 2:4 unknown."""
    for acc in ("ethos-u85-128", "ethos-u85-256"):
        shutil.copytree(DATA / "tf-mlp-dense" / acc, tmp_path / acc, ignore=shutil.ignore_patterns("*.xml"))
    comps = [read_compile(tmp_path / acc) for acc in ("ethos-u85-128", "ethos-u85-256")]
    assert not comps[0].has_breakdown and comps[0].layers[0].weight_bytes is None
    a = advise(comps, Target.default_for("ethos-u85-128"))
    assert a.bound == "weight" and not a.breakdown
    assert {l.two_four_eligible for l in a.layers} == {None}
    assert a.technique("prune").total_cycles == 50518  # the same floor from the CSV alone
    assert [classify(l) for l in comps[0].layers if l.op_cycles] == ["weight"] * 3


def test_rows_take_the_model_layer_names_of_a_run_record() -> None:
    from condition.backend.vela_sweep import with_names

    c = read_compile(DATA / "torch-mlp-dense" / "ethos-u85-128")
    assert [l.name for l in c.layers][0] == "tosa_rescale_default"
    named = with_names(c, [("Conv2D", "fc1"), ("Conv2D", "fc2"), ("Conv2D", "fc3")])
    assert [l.name for l in named.layers] == ["fc1", "fc2", "fc3"] and named.layers[0].op_cycles == c.layers[0].op_cycles
    assert with_names(c, [("FullyConnected", "fc1"), ("Conv2D", "fc2"), ("Conv2D", "fc3")]) == c  # other rows: left as Vela named them


def test_advice_json_is_versioned(tmp_path: Path) -> None:
    a = advice_for("torch-mlp-dense", "ethos-u85-128")
    path = a.write(tmp_path / "advice.json")
    d = json.loads(path.read_text())
    assert d["advice_version"] == ADVICE_VERSION and d["source"] == "estimate"
    assert d["techniques"][0]["source"] == "estimate" and d["rules"] == RULES
    assert Advice.read(path) == a
    d["advice_version"] = 99
    path.write_text(json.dumps(d))
    with pytest.raises(ArtifactError, match="advice_version 99"):
        Advice.read(path)


def test_missing_target_compile_is_one_clear_error() -> None:
    with pytest.raises(ArtifactError, match="no Vela figures for ethos-u85-512"):
        advise(compiles("tf-mlp-pruned95", "u85"), Target.default_for("ethos-u85-512"))


# ---- the command on real files ------------------------------------------------------------------

TINY = DATA / "tiny_mlp"  # 784 → 16 → 10 from tiny real runs: a tf .tflite, a torch run folder's .pte + delegate/*.tosa


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from condition.cli import main

    rc = main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_cli_advises_on_a_tflite(tmp_path: Path, capsys) -> None:
    rc, out, err = run_cli(["advise", str(TINY / "model_int8.tflite"), "--target", "ethos-u55-128", "--out", str(tmp_path), "--json"],
                           capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["advice_version"] == ADVICE_VERSION and d["family"] == "u55"
    assert [s["macs"] for s in d["sweep"]] == [32, 64, 128, 256]
    assert d["artifact"]["kind"] == "tflite" and d["techniques"][0]["source"] == "estimate"
    folder = next((tmp_path / "advise").iterdir())
    assert Advice.read(folder / "advice.json").to_dict() == {k: v for k, v in d.items() if k != "memory_modes"}
    assert sorted(p.name for p in (folder / "vela").iterdir()) == ["ethos-u55-128", "ethos-u55-256", "ethos-u55-32", "ethos-u55-64"]
    rc, out, _ = run_cli(["advise", str(TINY / "model_int8.tflite"), "--out", str(tmp_path)], capsys)
    assert rc == 0 and "Per layer at ethos-u85-128" in out and "Techniques ranked" in out and "Rules behind the figures" in out


def test_cli_advises_on_a_pte_through_its_tosa(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(TINY / "torch_run", run)
    rc, out, err = run_cli(["advise", str(run / "model.pte"), "--out", str(tmp_path), "--json"], capsys)
    assert rc == 0, err
    d = json.loads(out)
    assert d["artifact"]["kind"] == "tosa" and d["artifact"]["compiled"].endswith(".tosa") and len(d["sweep"]) == 5
    rc, _, err = run_cli(["advise", str(run / "model.pte"), "--target", "ethos-u55-128", "--out", str(tmp_path)], capsys)
    assert rc == 1 and err.count("\n") == 1 and "was compiled for ethos-u85-128" in err
    shutil.rmtree(run / "delegate")
    rc, _, err = run_cli(["advise", str(run / "model.pte"), "--out", str(tmp_path)], capsys)
    assert rc == 1 and "holds no TOSA graph" in err


@pytest.mark.parametrize("make,args,message", [
    (lambda p: p.write_bytes(b"not a flatbuffer at all"), [], "not a TFLite flatbuffer"),
    (lambda p: shutil.copy(TINY / "torch_run" / "delegate" / "output_tag0_TOSA-1.0+INT+int16+int4+cf.tosa", p.with_name("m_TOSA+cf.tosa")),
     ["--target", "ethos-u55-64"], "is a TOSA graph for U85"),
    (lambda p: shutil.copy(TINY / "model_int8.tflite", p), ["--model", "cnn"], "give FILE or --model, not both"),
])
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys, make, args, message) -> None:
    path = tmp_path / "m.tflite"
    make(path)
    given = path if path.exists() else path.with_name("m_TOSA+cf.tosa")
    rc, out, err = run_cli(["advise", str(given), "--out", str(tmp_path / "out"), *args], capsys)
    assert rc == 1 and out == "" and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out" / "advise").exists() or not any((tmp_path / "out" / "advise").iterdir())


# ---- the compare report: predicted bound vs achieved ---------------------------------------------

RECORDS = Path(__file__).parent / "data" / "records"


@pytest.fixture()
def compare_out(tmp_path: Path) -> Path:
    dest = tmp_path / "compare"
    shutil.copytree(RECORDS, dest)
    return dest


def _baselines(out: Path):
    from condition.compare.records import load_comparison
    from condition.compare.table import build_sections

    comparison = load_comparison(out)
    section = next(s for s in build_sections(comparison) if s.dataset == "fashion-mnist")
    base = next(r for r in section.rows if r.is_baseline)
    return comparison, section, base


def test_compare_report_shows_advice_next_to_what_ran(compare_out: Path, capsys) -> None:
    from condition.compare.advice import advice_file, advice_tables
    from condition.compare.report import write_report
    from condition.compare.report_html import advice_html
    from condition.compare.report_md import advice_md

    comparison, section, base = _baselines(compare_out)
    assert advice_md(comparison, [section]) == [] and advice_html(comparison, [section]) == ""  # optional: no advice, no section
    for fw in ("tf", "torch"):
        advice_for(f"{fw}-mlp-dense", "ethos-u85-128").write(advice_file(compare_out, fw, base.sides[fw].record.config_hash))
    tables = {t.frontend: t for t in advice_tables(comparison, section)}
    assert set(tables) == {"tf", "torch"}
    tf_rows = {r.label: r for r in tables["tf"].rows}
    assert set(tf_rows) == {"prune 95 %", "prune 2:4", "cluster 16"}  # single-technique rows only
    prune = tf_rows["prune 95 %"]
    assert prune.technique == "prune" and prune.predicted_cycles == 50518
    assert prune.achieved_cycles == section.row("prune 95 %").sides["tf"].total_cycles
    assert prune.verdict == "reached the bound"
    assert tf_rows["cluster 16"].verdict == "reached the bound"
    assert tf_rows["prune 2:4"].technique == "2:4" and tf_rows["prune 2:4"].verdict == "reached the bound"
    assert tables["tf"].predicted_order[0] == "prune 95 %"
    files = write_report(compare_out, comparison)
    md, html = files.markdown.read_text(), files.html.read_text()
    assert "## Advice vs measured" in md and "| prune 95 % | 50,518 (×0.31) | 47,646" in md
    assert "Advice vs measured" in html and "reached the bound" in html and "Vela estimate" in html
    rc, out, _ = run_cli(["report", str(compare_out)], capsys)  # re-rendering keeps it
    assert rc == 0 and "## Advice vs measured" in (compare_out / "report.md").read_text()


def test_compare_writes_advice_for_each_baseline_artifact(compare_out: Path) -> None:
    from condition.compare.advice import advice_file, write_comparison_advice

    comparison, _, base = _baselines(compare_out)
    tf_run, torch_run = Path(base.sides["tf"].run_dir), Path(base.sides["torch"].run_dir)
    shutil.copy(TINY / "model_int8.tflite", tf_run / base.sides["tf"].record.artifact("tflite").path)
    problems = write_comparison_advice(comparison)  # the torch baseline's TOSA was not kept in the recorded folder
    assert len(problems) == 1 and problems[0].startswith("advice for torch mlp: ") and problems[0].endswith("file not found")
    tf_file = advice_file(compare_out, "tf", base.sides["tf"].record.config_hash)
    assert Advice.read(tf_file).artifact["frontend"] == "tf"
    before = tf_file.stat().st_mtime_ns
    tosa = torch_run / base.sides["torch"].record.artifact("tosa").path
    tosa.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(TINY / "torch_run" / "delegate" / "output_tag0_TOSA-1.0+INT+int16+int4+cf.tosa", tosa)
    assert write_comparison_advice(comparison) == []
    assert tf_file.stat().st_mtime_ns == before  # done before: not compiled again
    assert Advice.read(advice_file(compare_out, "torch", base.sides["torch"].record.config_hash)).artifact["kind"] == "tosa"


def test_the_prune_bound_counts_only_the_layers_the_policy_prunes() -> None:
    """A DS-CNN-like model: the stem, the depthwise conv and the classifier stay dense when pruned,
    so the bound must not promise their bytes away (it did: ×0.05 predicted, ×0.30 measured)."""
    policy = {"tosa_rescale_default": "image stem (1 input channels)", "tosa_rescale_default_1": "depthwise",
              "tosa_rescale_default_2": "", "tosa_rescale_default_3": "", "tosa_rescale_default_4": "",
              "tosa_reshape_default_1": "the classifier (last weighted layer)"}
    blind = advice_for("torch-dwcnn", "ethos-u85-128")
    aware = advice_for("torch-dwcnn", "ethos-u85-128", prune_left_out=policy)
    by_name = {l.name: l for l in aware.layers}
    assert by_name["tosa_rescale_default_1"].prune_left_out == "depthwise" and by_name["tosa_rescale_default_4"].prune_left_out == ""
    assert by_name["tosa_avg_pool2d_default"].prune_left_out is None  # no weights: the policy has no word on it
    kept = 288 + 208 + 528
    pruned = 224 + 2400 + 10304
    assert aware.technique("prune").encoded_weight_bytes == kept + round(224 * 0.05) + round(2400 * 0.05) + round(10304 * 0.05)
    assert blind.technique("prune").encoded_weight_bytes == pytest.approx((kept + pruned) * 0.05, abs=4)
    assert "kept dense by the pruning policy: tosa_rescale_default, tosa_rescale_default_1, tosa_reshape_default_1" \
        in aware.technique("prune").note
    assert aware.technique("cluster") == blind.technique("cluster")  # clustering has no such policy


def test_the_policy_is_read_from_a_record_of_either_frontend() -> None:
    from condition.backend.advise import policy_of
    from condition.backend.metrics import LayerWeights
    from condition.techniques import prune_policy

    def lw(name: str, kind: str, shape: list[int]) -> LayerWeights:
        n = 1
        for d in shape:
            n *= d
        return LayerWeights(name, shape, n, 0, 200, kind=kind)

    tf = [lw("stem", "conv", [64, 3, 3, 1]), lw("block1_dw", "depthwise", [1, 3, 3, 64]), lw("block1_pw", "conv", [64, 1, 1, 64]),
          lw("fc", "fc", [10, 64])]
    torch = [lw("stem", "conv", [64, 1, 3, 3]), lw("block1_dw", "depthwise", [64, 1, 3, 3]), lw("block1_pw", "conv", [64, 64, 1, 1]),
             lw("fc", "fc", [10, 64])]
    expected = {"stem": "image stem (1 input channels)", "block1_dw": "depthwise", "block1_pw": "",
                "fc": "the classifier (last weighted layer)"}
    assert prune_policy(tf, "tf") == prune_policy(torch, "torch") == expected
    assert policy_of("block1_pw_relu", expected) == "" and policy_of("stem_relu", expected).startswith("image stem")
    assert policy_of("pool", expected) is None and policy_of("stem", None) is None


def test_memory_modes_that_fit_a_limit(tmp_path: Path, capsys) -> None:
    args = ["advise", str(TINY / "model_int8.tflite"), "--target", "ethos-u55-128", "--out", str(tmp_path)]
    rc, out, err = run_cli(args + ["--json"], capsys)
    assert rc == 0, err
    modes = json.loads(out)["memory_modes"]
    assert {(m["system_config"], m["memory_mode"]) for m in modes["modes"]} == {
        (c, m) for c in ("Ethos_U55_Deep_Embedded", "Ethos_U55_High_End_Embedded") for m in ("Sram_Only", "Shared_Sram")}
    sram = sorted({m["sram_bytes"] for m in modes["modes"]})
    assert len(sram) > 1 and modes["cheapest"]["sram_bytes"] == sram[0] and modes["limits"] == {}
    rc, out, err = run_cli(args + ["--sram-limit", str(sram[0])], capsys)  # only the modes needing the least SRAM fit
    assert rc == 0, err
    table = out[out.index("Memory modes"):]
    assert "must fit SRAM ≤" in table and "| no: SRAM" not in table
    fit_rows = [l for l in table.splitlines() if l.rstrip().endswith("  yes")]
    assert fit_rows and all("Shared_Sram" in l for l in fit_rows) and "  no: SRAM " in table
    assert "cheapest that fits (least SRAM, then shortest inference): Ethos_U55_" in table


def test_pte_memory_is_read_from_the_file(tmp_path: Path) -> None:
    """The .pte's delegate scratch is Vela's SRAM use of the graph it was compiled from (compiled again here)."""
    pytest.importorskip("executorch")
    from condition.backend.target import Target
    from condition.backend.vela import estimate_from_csvs, find_vela_csvs
    from condition.backend.vela_sweep import compile_one
    from condition.frontends.torch.pte import pte_memory

    memory = pte_memory(TINY / "torch_run" / "model.pte")
    assert memory.artifact == "pte" and memory.source == "file"
    assert memory.planned_bytes >= 784 * 4  # the float input image at least (the quantize op runs on the CPU)
    compile_one(next((TINY / "torch_run" / "delegate").glob("*.tosa")), Target(), tmp_path / "vela")
    assert memory.scratch_bytes == estimate_from_csvs(find_vela_csvs(tmp_path / "vela")[0]).sram_used_bytes > 0
