"""The per-layer table puts the same layer of tf and torch on one line for any model: rows pair by
the graph's structure (op kind, MACs, weight shape), never by name. Fast: hand-built rows and the
real records in tests/data/layers (see its README), no framework."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from condition.backend.metrics import LayerEstimate, LayerWeights, MetricsRecord
from condition.compare.layer_pairing import LayerRow, attach_weights, layer_rows, pair_rows
from condition.compare.layers import cycles_marker
from condition.compare.report import write_report

DATA = Path(__file__).parent / "data" / "layers"


def row(name: str, operator: str, cycles: int, macs: int = 0, target: str = "NPU") -> LayerEstimate:
    return LayerEstimate(name, operator, target, cycles, cycles, macs, 0.0)


def weights(name: str, kind: str, shape: list[int]) -> LayerWeights:
    params = 1
    for d in shape:
        params *= d
    return LayerWeights(name, shape, params, 0, 16, kind)


def names(pairs) -> list[tuple[str | None, str | None]]:
    return [(a.estimate.name if a else None, b.estimate.name if b else None) for a, b in pairs]


def record(name: str) -> MetricsRecord:
    return MetricsRecord.read(DATA / f"{name}.json")


def sample_pairs(model: str):
    tf, torch = record(f"{model}-tf"), record(f"{model}-torch")
    return pair_rows(tf.vela.per_layer, torch.vela.per_layer, tf.weights.layers, torch.weights.layers)


# A small Keras CNN and its torch twin: the same layers, names that share nothing (one torch name
# even reads like a different Keras layer), and torch's Linear lowered to a Conv2D.
KERAS = ([row("conv2d", "Conv2DBias", 3631, 110_592), row("conv2d", "Relu", 0),
          row("depthwise_conv2d", "DepthwiseConv2DBias", 4236, 36_864), row("depthwise_conv2d", "Relu", 0),
          row("conv2d_1", "Conv2DBias", 6249, 131_072), row("dense", "FullyConnected", 517, 320)],
         [weights("conv2d", "conv", [16, 3, 3, 3]), weights("depthwise_conv2d", "depthwise", [1, 3, 3, 16]),
          weights("conv2d_1", "conv", [32, 1, 1, 16]), weights("dense", "fc", [10, 32])])
TORCH = ([row("features.0", "Conv2DBias", 3631, 110_592), row("dense", "DepthwiseConv2DBias", 4236, 36_864),
          row("3.body.0", "Conv2DBias", 6249, 131_072), row("classifier", "Conv2DBias", 517, 320)],
         [weights("features.0", "conv", [16, 3, 3, 3]), weights("dense", "depthwise", [16, 1, 3, 3]),
          weights("3.body.0", "conv", [32, 16, 1, 1]), weights("classifier", "fc", [10, 32])])


def test_a_keras_and_a_torch_model_with_different_names_pair_by_structure():
    pairs = pair_rows(KERAS[0], TORCH[0], KERAS[1], TORCH[1])
    assert names(pairs) == [("conv2d", "features.0"), ("depthwise_conv2d", "dense"), ("conv2d_1", "3.body.0"),
                            ("dense", "classifier")]
    assert [(a.kind, b.kind) for a, b in pairs][-1] == ("matmul", "matmul")  # a Linear lowered to Conv2D is a matmul
    assert [(a.weights.name, b.weights.name) for a, b in pairs] == [(a.estimate.name, b.estimate.name) for a, b in pairs]


def test_mean_lowered_to_depthwise_and_mul_pairs_with_avgpool_and_later_rows_stay_in_place():
    """tf's GlobalAveragePooling2D is a MEAN that Vela lowers to DepthwiseConv2D + Mul (no exported
    weights); torch's AdaptiveAvgPool2d is an AvgPool. Counting weighted rows would give tf's dense
    weights to the MEAN's depthwise row and shift the classifier."""
    tf_rows = KERAS[0][:-1] + [row("global_average_pooling2d", "DepthwiseConv2DBias", 2783, 2048),
                               row("global_average_pooling2d", "Mul", 0), KERAS[0][-1]]
    torch_rows = TORCH[0][:-1] + [row("tosa_avg_pool2d_default", "AvgPool", 776, 2048), TORCH[0][-1]]
    pairs = pair_rows(tf_rows, torch_rows, KERAS[1], TORCH[1])
    assert names(pairs)[3:] == [("global_average_pooling2d", "tosa_avg_pool2d_default"), ("dense", "classifier")]
    assert pairs[3][0].weights is None and pairs[3][0].kind == "avgpool"
    assert pairs[4][0].weights.name == "dense"


def test_the_real_mean_and_avgpool_records_pair_every_layer():
    pairs = sample_pairs("user-gap-u85")
    assert all(a is not None and b is not None for a, b in pairs)
    assert [(a.estimate.operator, b.estimate.operator) for a, b in pairs][-2:] == [("DepthwiseConv2D", "AvgPool"),
                                                                                   ("FullyConnected", "Conv2D")]
    assert [b.estimate.name for _, b in pairs] == ["0.0", "1.0", "2.0", "3.0", "4.0", "5.body.0.0", "5.body.1.0",
                                                   "tosa_avg_pool2d_default", "8"]
    weighted = [(a.weights, b.weights) for a, b in pairs if a.weights or b.weights]
    assert len(weighted) == 8 and all(wa and wb and wa.params == wb.params for wa, wb in weighted)


def test_an_op_one_graph_does_not_have_stands_alone():
    """tf copies the input (MemoryCopy) where torch does not; an extra conv in the middle of one
    graph gets a line of its own, and the layers after it still pair."""
    extra = row("torch_only", "Conv2DBias", 900, 4096)
    torch_rows = TORCH[0][:2] + [extra] + TORCH[0][2:]
    tf_rows = [row("input_copy", "MemoryCopy", 1408, 784)] + KERAS[0]
    pairs = pair_rows(tf_rows, torch_rows, KERAS[1], TORCH[1])
    assert names(pairs) == [("input_copy", None), ("conv2d", "features.0"), ("depthwise_conv2d", "dense"),
                            (None, "torch_only"), ("conv2d_1", "3.body.0"), ("dense", "classifier")]


def test_equal_structures_pair_one_to_one():
    pairs = sample_pairs("dscnn-u55")
    assert names(pairs)[0] == ("serving_default_input:0_copy", None)  # tf's input copy, nothing on torch's side
    assert all(a is not None and b is not None and a.kind == b.kind for a, b in pairs[1:])
    assert [a.estimate.name for a, _ in pairs[1:]] == [b.estimate.name for _, b in pairs[1:-2]] + ["pool", "fc"]
    blocks = [row(f"b{k}", op, 100, macs) for k in range(4) for op, macs in (("DepthwiseConv2D", 10), ("Conv2D", 20))]
    assert names(pair_rows(blocks, blocks)) == [(r.name, r.name) for r in blocks]


def test_weights_go_to_their_vela_rows_when_the_counts_differ():
    tf = record("user-gap-u85-tf")
    attached = attach_weights(tf.vela.per_layer, tf.weights.layers)
    by_row = {r.name: w.name for r, w in zip(tf.vela.per_layer, attached) if w is not None}
    assert "global_average_pooling2d" not in by_row  # the MEAN's depthwise conv: Vela's weights, not the model's
    assert by_row["dense"] == "tfl.pseudo_qconst1" and by_row["re_lu"] == "tfl.pseudo_qconst15"
    assert len(by_row) == len(tf.weights.layers)


def test_rows_of_zero_cycles_are_left_out_but_weighted_cpu_rows_stay():
    rows = layer_rows([row("a", "Conv2D", 10, 90), row("a", "Relu", 0), row("b", "Conv2D", 0, 90, target="CPU")],
                      [weights("a", "conv", [10, 1, 3, 3]), weights("b", "conv", [10, 1, 3, 3])])
    assert [(r.estimate.name, r.estimate.operator, r.weights.name) for r in rows] == [("a", "Conv2D", "a"), ("b", "Conv2D", "b")]


def line(cycles_a: int, cycles_b: int) -> tuple[LayerRow, LayerRow]:
    return LayerRow(row("a", "Conv2D", cycles_a), None, "conv"), LayerRow(row("b", "Conv2D", cycles_b), None, "conv")


@pytest.mark.parametrize("a, b, text, css", [(1060, 1000, "tf +6 %", "worse-tf"), (1000, 1060, "torch +6 %", "worse-torch"),
                                             (1040, 1000, "≈", ""), (2783, 776, "tf +259 %", "worse-tf")])
def test_a_row_whose_cycles_differ_by_more_than_5_percent_is_marked(a, b, text, css):
    marker = cycles_marker(*line(a, b), ("tf", "torch"))
    assert (marker.text, marker.css) == (text, css)
    assert f"tf {a:,} vs torch {b:,} cycles" in marker.note
    assert cycles_marker(line(a, b)[0], None, ("tf", "torch")).text == "tf only"


def test_the_report_of_two_user_models_pairs_every_weighted_row(tmp_path):
    """End to end through the manifest, the table and both writers: every line with weights has a
    tf and a torch layer, and the MEAN/AvgPool line is marked."""
    cells = []
    for name in ("user-gap-u85-tf", "user-gap-u85-torch"):
        rec = record(name)
        run = tmp_path / rec.frontend / "user" / f"post-training-quant-{rec.config_hash}"
        rec.write(run)
        cells.append({"label": "post-training-quant", "frontend": rec.frontend, "run_dir": str(run.relative_to(tmp_path)),
                      "config_hash": rec.config_hash, "techniques": rec.techniques, "model": "user",
                      "dataset": rec.dataset, "target": rec.target.as_dict(), "seed": rec.seed, "epochs": rec.epochs})
    (tmp_path / "compare.json").write_text(json.dumps({"manifest_version": 1, "recipe": "", "cells": cells}))
    files = write_report(tmp_path)
    md = files.markdown.read_text()
    table = md[md.index("#### Per layer · post-training-quant"):].split("\n\n")[2].splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    lines = [[c.strip() for c in t.strip("|").split("|")] for t in table[2:]]
    col = {h: i for i, h in enumerate(header)}
    weighted = [l for l in lines if l[col["weights params"]] != "–"]
    assert len(weighted) == 8
    assert all(l[col["layer tf"]] != "–" and l[col["layer torch"]] != "–" for l in weighted)
    assert [l[col["cycles tf vs torch"]] for l in lines].count("tf +259 %") == 1
    mean = next(l for l in lines if l[col["cycles tf vs torch"]] == "tf +259 %")
    assert (mean[col["Vela operator tf"]], mean[col["Vela operator torch"]]) == ("DepthwiseConv2D", "AvgPool")
    assert lines[-1][col["layer torch"]] == "8" and lines[-1][col["weights params"]] == "320"
    html = files.html.read_text()
    assert 'class="worse-tf" title="tf 2,783 vs torch 776 cycles (Vela estimate)">tf +259 %</td>' in html
    shutil.rmtree(tmp_path / "tf")  # tf not run: torch's rows stand alone, no marker column
    md = write_report(tmp_path).markdown.read_text()
    assert "| – | 0.0 | – | Conv2D | – | 3,631 | 432 | – | 0.2 % | – | 27 |" in md and "cycles tf vs torch" not in md
