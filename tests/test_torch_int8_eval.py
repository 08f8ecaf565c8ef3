"""The torch int8 evaluator: a batched TOSA graph (the .pte's own graph patched to 8 images per
call, or the converted graph lowered again for evaluation only) and the same graph in numpy
(tosa_numpy) give the same logits as the .pte's batch-1 graph run image by image on the reference
model, on an MLP, BatchNorm CNNs with a depthwise conv and a residual CNN; a batched or numpy
result that differs is caught and replaced; the .pte holds no path of the folder it was built in.
Real PT2E, ExecuTorch lowering, Vela and TOSA reference model, on random images (no data set
needed)."""
from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from condition.backend.target import Target  # noqa: E402
from condition.datasets import Dataset  # noqa: E402
from condition.frontend import StepContext  # noqa: E402
from condition.frontends.torch import accuracy as acc  # noqa: E402
from condition.frontends.torch import export, post_training_quant  # noqa: E402
from condition.frontends.torch.train import test_tensors as tensors_of  # noqa: E402  (not a test)
from condition.techniques import PostTrainingQuantConfig  # noqa: E402

IMAGES = 20
BATCH = 8  # 20 images = 8 + 8 + 4: the last chunk is padded


class Mlp(nn.Module):
    SHAPE = (1, 28, 28)

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(784, 32), nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(torch.flatten(x, 1))))


class BnCnn(nn.Module):
    """conv → BN → ReLU → depthwise → BN → ReLU → average pool → dense."""

    SHAPE = (1, 28, 28)

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn1 = nn.Conv2d(self.SHAPE[0], 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8)
        self.dw, self.bn2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv(x)))
        x = torch.relu(self.bn2(self.dw(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class RgbCnn(BnCnn):
    """The same on 3-channel images: the .pte takes them channels-last (no Transpose on the NPU)."""

    SHAPE = (3, 16, 16)


class RgbConvFc(nn.Module):
    """conv → ReLU → flatten → dense on 3-channel images: every pixel of every channel reaches the
    logits by its own weight, so images laid out wrongly give other logits (average pooling hides it)."""

    SHAPE = (3, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.fc = nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Linear(4 * 8 * 8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(torch.relu(self.conv(x)), 1))


def _data(shape: tuple[int, int, int] = (1, 28, 28)) -> Dataset:
    rng = np.random.default_rng(0)
    c, h, w = shape
    x = rng.integers(0, 255, (64 + IMAGES, h, w) + ((c,) if c > 1 else ()), dtype=np.uint8)
    y = rng.integers(0, 10, 64 + IMAGES)
    return Dataset("random", x[:64], y[:64], x[64:], y[64:])


def _lowered(model: nn.Module, folder, nchw: bool = False) -> export.LoweredProgram:
    torch.manual_seed(0)
    for m in model.modules():  # BatchNorm statistics that are not the identity
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    data = _data(model.SHAPE)
    converted = post_training_quant.apply(model.eval(), PostTrainingQuantConfig(calibration_images=32), StepContext(data, Target(), seed=0))
    example = export.example_input(model.SHAPE) if nchw else export.program_input(model.SHAPE)
    return export.lower(converted, example, Target(), folder)


@pytest.fixture(scope="module", params=[Mlp, BnCnn, RgbCnn], ids=["mlp", "bn-cnn", "rgb-cnn"])
def lowered(request, tmp_path_factory) -> export.LoweredProgram:
    torch.manual_seed(0)
    return _lowered(request.param(), tmp_path_factory.mktemp(request.param.__name__))


@pytest.mark.parametrize("path", ["patched", "lowered again"])
def test_batched_graph_gives_the_per_image_logits(lowered, path, monkeypatch):
    """The .pte's TOSA graph patched to 8 images per call, and the converted graph lowered again at
    8 images: the same logits as one image per call on the batch-1 graph, bit for bit."""
    x, _ = tensors_of(_data(lowered.example[0].shape[1:]))
    graphs = []
    evaluate = acc.evaluate

    def spy(graph, *args, **kw):
        graphs.append(graph)
        return evaluate(graph, *args, **kw)

    monkeypatch.setattr(acc, "evaluate", spy)
    monkeypatch.setattr(acc, "EVAL_BATCH", BATCH)
    monkeypatch.setattr(acc, "numpy_graph", lambda exact, batch: None)  # the reference model's batched paths
    if path == "lowered again":
        monkeypatch.setattr(acc, "rebatched_graph", lambda exact, batch: None)
    batched = acc.int8_predictions(lowered, x, batched=True)
    assert [g.batch for g in graphs] == [BATCH, 1]  # the batched graph ran, then its first images were checked at batch 1
    assert (graphs[0].program is lowered.eval_program) == (path == "patched")
    per_image = acc.int8_predictions(lowered, x, batched=False)
    assert np.array_equal(batched, per_image)
    logits = evaluate(graphs[0], x, workers=1)
    assert torch.equal(logits, evaluate(acc.batch1_graph(lowered), x, workers=1))  # bit for bit, padding dropped


def test_a_batched_result_that_differs_falls_back_to_the_batch1_graph(lowered, monkeypatch, caplog):
    """Batched delegate calls come back off by one: the check on the first images catches it and
    every image is evaluated again on the batch-1 graph."""
    x, _ = tensors_of(_data(lowered.example[0].shape[1:]))
    call, calls = acc._DelegateRunner.__call__, []

    def batched_off_by_one(self, module, *args):
        calls.append(len(args[0]))
        outs = call(self, module, *args)
        return tuple(o + 1 for o in outs) if self.batch > 1 else outs

    monkeypatch.setattr(acc._DelegateRunner, "__call__", batched_off_by_one)
    monkeypatch.setattr(acc, "batched_graph", lambda lowered, batch: None)  # no second lowering
    monkeypatch.setattr(acc, "numpy_graph", lambda exact, batch: None)
    with caplog.at_level(logging.WARNING, logger=acc.__name__):
        preds = acc.int8_predictions(lowered, x, batched=True)
    assert "differs from the .pte's batch-1 graph" in caplog.text
    assert calls == [IMAGES, acc.CHECK_IMAGES, IMAGES]
    monkeypatch.undo()
    assert np.array_equal(preds, acc.int8_predictions(lowered, x, batched=False))


def test_numpy_int8_arithmetic_gives_the_reference_models_logits(lowered):
    """tosa_numpy computes the .pte's TOSA graph (conv with padding and stride, depthwise, BN folded
    into rescales, average pool, dense) to the same int8 logits as the reference model, image by image."""
    x, _ = tensors_of(_data(lowered.example[0].shape[1:]))
    if export.channels_last(lowered.example):
        x = x.contiguous(memory_format=torch.channels_last)
    exact = acc.batch1_graph(lowered)
    graph = acc.numpy_graph(exact)
    assert graph is not None and graph.engine == "numpy"
    assert torch.equal(acc.evaluate(graph, x, workers=1), acc.evaluate(exact, x, workers=1))


def test_int8_accuracy_runs_numpy_checked_against_the_reference_model(lowered, monkeypatch):
    """From BATCHED_MIN_IMAGES images the int8 accuracy comes from tosa_numpy after its first images
    matched the reference model; the record says which evaluator ran and on how many images it was checked."""
    x, y = tensors_of(_data(lowered.example[0].shape[1:]))
    monkeypatch.setattr(acc, "BATCHED_MIN_IMAGES", 8)
    monkeypatch.setattr(acc, "NUMPY_CHECK_IMAGES", 8)
    result = acc.int8_accuracy(lowered, x, y)
    assert result.evaluator == acc.NUMPY_INT8_EVALUATOR.format(check=8)
    assert result.value == float((acc.int8_predictions(lowered, x, batched=False) == y.numpy()).mean())


def test_numpy_logits_that_differ_from_the_reference_model_are_not_used(lowered, monkeypatch, caplog):
    """tosa_numpy comes back off by one: the check against the reference model catches it and the
    reference model evaluates every image; the record names the reference model."""
    from condition.frontends.torch.tosa_numpy import TosaNumpyGraph

    x, y = tensors_of(_data(lowered.example[0].shape[1:]))
    run = TosaNumpyGraph.run
    monkeypatch.setattr(TosaNumpyGraph, "run", lambda self, inputs: [o + 1 for o in run(self, inputs)])
    monkeypatch.setattr(acc, "BATCHED_MIN_IMAGES", 8)
    with caplog.at_level(logging.WARNING, logger=acc.__name__):
        result = acc.int8_accuracy(lowered, x, y)
    assert "differs from the TOSA reference model" in caplog.text
    assert result.evaluator == acc.INT8_EVALUATOR
    monkeypatch.undo()
    assert result.value == float((acc.int8_predictions(lowered, x, batched=False) == y.numpy()).mean())


def test_a_graph_with_an_op_numpy_does_not_compute_goes_to_the_reference_model(lowered, monkeypatch):
    from condition.frontends.torch import tosa_numpy

    monkeypatch.setattr(tosa_numpy, "SUPPORTED_OPS", tosa_numpy.SUPPORTED_OPS - {"RESCALE"})
    assert acc.numpy_graph(acc.batch1_graph(lowered)) is None


class ResCnn(nn.Module):
    """conv (stride 2, padding) → BN → ReLU6 → max pool → padded 3×3 average pool → a residual block
    with a dilated conv, an Add and a clamp → average pool → dense: the CNN ops the zoo's MobileNet
    adds to DS-CNN's, and pooling windows that reach over the edge."""

    SHAPE = (3, 16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.smooth = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)  # edge windows average fewer pixels
        self.dw = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=8)
        self.pw = nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.smooth(self.pool(nn.functional.relu6(self.bn(self.stem(x)))))
        x = torch.clamp(x + self.pw(nn.functional.relu6(self.dw(x))), -0.5, 0.5)  # sharing the Add's quantization
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def test_numpy_int8_arithmetic_on_a_residual_cnn(tmp_path):
    """Add (int32 after rescales), Clamp, max pool, a padded average pool and a dilated depthwise conv:
    numpy's logits are the reference model's, bit for bit."""
    from condition.frontends.torch.tosa_numpy import TosaNumpyGraph

    torch.manual_seed(0)
    lowered = _lowered(ResCnn(), tmp_path)
    x, _ = tensors_of(_data(ResCnn.SHAPE))
    x = x.contiguous(memory_format=torch.channels_last)
    exact = acc.batch1_graph(lowered)
    ops = [(name, attributes) for graph in exact.graphs.values() for name, _, _, attributes in TosaNumpyGraph(graph).ops]
    assert {"ADD", "CLAMP", "MAX_POOL2D", "DEPTHWISE_CONV2D", "AVG_POOL2D"} <= {name for name, _ in ops}, ops
    assert any(name == "AVG_POOL2D" and any(a["pad"]) for name, a in ops)  # count excludes the padding
    graph = acc.numpy_graph(exact)
    assert graph is not None
    assert torch.equal(acc.evaluate(graph, x, workers=1), acc.evaluate(exact, x, workers=1))


def test_pte_holds_no_path_of_its_build_folder(lowered):
    blob = lowered.pte.read_bytes()
    assert str(lowered.pte.parent).encode() not in blob
    assert b"delegate" in blob  # the intermediate-artifact folder, named relative to the .pte


def test_a_channels_last_program_runs_no_transpose_and_computes_what_torch_does(tmp_path):
    """3-channel images: the .pte's input is NHWC, so Vela places no Transpose before the first conv;
    the reference model given the images channels-last computes the converted graph's logits (to an
    int8 step or two: TOSA rounds where fake-quant computes in float), given them in NCHW memory it
    computes something else, and the int8 evaluator lays NCHW test tensors out as the program wants."""
    from condition.backend.vela import find_vela_csvs, parse_per_layer_csv

    lowered = _lowered(RgbConvFc(), tmp_path)
    assert export.channels_last(lowered.example)
    _, per_layer = find_vela_csvs(lowered.intermediates)
    assert parse_per_layer_csv(per_layer)[0].operator == "Conv2D"  # no Transpose of the image before the first conv
    x, _ = tensors_of(_data(RgbConvFc.SHAPE))  # NCHW in memory, as the data loader makes them
    exact = acc.evaluate(acc.batch1_graph(lowered), x.contiguous(memory_format=torch.channels_last), workers=1)
    wrong = acc.evaluate(acc.batch1_graph(lowered), x, workers=1)
    with torch.no_grad():
        reference = lowered.converted(x)
    scale = float(reference.abs().max())
    assert float((exact - reference).abs().max()) <= 0.02 * scale
    assert float((wrong - reference).abs().max()) > 0.2 * scale  # the layout matters in this model
    assert np.array_equal(acc.int8_predictions(lowered, x), acc.evaluate(acc.batch1_graph(lowered), x.contiguous(
        memory_format=torch.channels_last), workers=1).argmax(-1).numpy())  # the evaluator lays NCHW tensors out itself
    nchw = _lowered(RgbConvFc(), tmp_path / "nchw", nchw=True)
    _, per_layer = find_vela_csvs(nchw.intermediates)
    assert parse_per_layer_csv(per_layer)[0].operator == "Transpose"  # what channels-last saves
