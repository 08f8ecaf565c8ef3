"""`run(config, progress) -> MetricsRecord` for the TensorFlow frontend.

float model (trained once, cached) → each technique of the chain on a fresh clone → full-int8
.tflite → weights counted on the exported tensors → Vela → int8 accuracy on the interpreter →
(optional FVP) → one metrics record in an atomically renamed run folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from condition.backend.accuracy import EVALUATOR as INT8_EVALUATOR
from condition.backend.accuracy import int8_accuracy
from condition.backend.metrics import AccuracyResult, MetricsRecord, WeightStats
from condition.backend.vela import compile_tflite
from condition.datasets import Dataset, load_dataset
from condition.errors import ConditionError, StepError
from condition.init import INIT_SCHEME
from condition.models import parse_model_spec
from condition.recorder import RunRecorder
from condition.run import Progress, RunConfig, no_progress
from condition.techniques import PostTrainingQuantConfig, make_config

FLOAT_EVALUATOR = "keras float32"
DEFAULT_CALIBRATION = PostTrainingQuantConfig().calibration_images


def _train_data(ds: Dataset, input_shape: tuple[int, ...], seed: int, progress: Progress):
    from condition.frontends.tf.train import TrainData, shaped

    return TrainData(shaped(ds.normalised("train"), input_shape), ds.y_train, shaped(ds.normalised("test"), input_shape),
                     ds.y_test, seed=seed, progress=progress)


def _float_model(config: RunConfig, ds: Dataset, progress: Progress) -> tuple[Any, Any, bool]:
    """(trained float model, its TrainData, came_from_cache); trained at most once per identity."""
    from condition.frontends.tf import models, train

    spec = parse_model_spec(config.model)
    model = models.load_model(spec, ds.input_shape, ds.num_classes, config.seed)
    models.check_compatible(model, ds.input_shape, ds.num_classes, config.model)
    data = _train_data(ds, tuple(model.input_shape[1:]), config.seed, progress)
    identity = {
        "model": train.model_file_identity(spec.value) if spec.kind == "file" else f"{spec.value}@{INIT_SCHEME}",
        "dataset": config.dataset if config.dataset == "fashion-mnist" else train.model_file_identity(config.dataset),
        "epochs": config.epochs, "seed": config.seed, "train_limit": config.train_limit,
    }

    def fit_float() -> Any:
        train.fit(model, data, config.epochs, "train float")
        return model

    trained, cached = train.cached_float_model(Path(config.out) / "tf" / ".float-cache", identity, fit_float)
    return trained, data, cached


def _apply(technique: str, options: dict[str, Any], model: Any, data: Any, done: list[str], where: str) -> Any:
    """One technique on a fresh clone; tfmot/Keras failures become one-line StepErrors."""
    from condition.frontends.tf import cluster, post_training_quant, prune, qat

    config = make_config(technique, options)
    try:
        if technique == "qat":
            return qat.apply(model, config, data, after=tuple(done))
        module = {"prune": prune, "cluster": cluster, "post-training-quant": post_training_quant}[technique]
        return module.apply(model, config, data)
    except ConditionError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise StepError(technique, where, f"{type(exc).__name__}: {first}") from None


def _export(model: Any, data: Any, calibration: int, path: Path, per_channel: bool = True) -> Path:
    from condition.frontends.tf.export import to_int8_tflite

    return to_int8_tflite(model, data.calibration(calibration), path, per_channel=per_channel)


def run(config: RunConfig, progress: Progress = no_progress) -> MetricsRecord:
    """Condition, export, compile and measure one configuration; returns the written record."""
    import condition.frontends.tf  # noqa: F401  sets TF_USE_LEGACY_KERAS before tensorflow loads
    from condition.frontends.tf.train import float_accuracy
    from condition.frontends.tf.weights import weight_stats

    with RunRecorder(config, progress) as rec:
        with rec.step("load data"):
            ds = load_dataset(config.dataset).subset(config.train_limit, config.eval_limit)
        with rec.step("train float"):
            model, data, cached = _float_model(config, ds, progress)
        if cached:
            rec.note("float model from the cache (trained earlier with the same model, data, epochs, seed)")
        with rec.step("evaluate float"):
            accuracy = [AccuracyResult("float", float_accuracy(model, data), FLOAT_EVALUATOR, len(data.y_test))]

        calibration = DEFAULT_CALIBRATION
        stages: list[WeightStats] = []
        done: list[str] = []
        for i, step in enumerate(config.chain):
            with rec.step(step.technique):
                model = _apply(step.technique, step.options, model, data, done, config.model)
            done.append(step.technique)
            if step.technique == "post-training-quant":
                calibration = int(step.options.get("calibration_images", DEFAULT_CALIBRATION))
            elif i < len(config.chain) - 1:  # intermediate stage: export and count what it did
                with rec.step(f"export {step.technique}"):
                    path = _export(model, data, calibration, rec.path(f"after_{step.technique}_int8.tflite"))
                    stats = weight_stats(path)
                stages.append(WeightStats(layers=stats.layers, stage=step.technique))

        # Clustered weights converted without QAT get per-tensor scales (see to_int8_tflite), as on torch.
        per_channel = not ("cluster" in done and "qat" not in done)
        if not per_channel:
            rec.note("clustered weights quantized per tensor so each layer keeps its shared values as int8 codes")
        with rec.step("export int8"):
            tflite = _export(model, data, calibration, rec.path("model_int8.tflite"), per_channel=per_channel)
            weights = weight_stats(tflite)
        with rec.step("vela"):
            compiled = compile_tflite(tflite, config.target, rec.path("vela"))
        if compiled.estimate.ops_on_cpu:
            rec.note(f"{compiled.estimate.ops_on_cpu} op(s) stay on the CPU (Vela cannot place them on the NPU): "
                     + ", ".join(compiled.estimate.cpu_ops))
        with rec.step("evaluate int8"):
            acc = int8_accuracy(tflite, data.x_test, data.y_test)
        accuracy.append(AccuracyResult("int8", acc.value, INT8_EVALUATOR, acc.images))
        fvp = rec.run_fvp(compiled.vela_tflite) if config.run_fvp else None
        return rec.finish(
            accuracy=accuracy,
            weights=weights,
            stage_weights=stages,
            vela=compiled.estimate,
            fvp=fvp,
            artifacts=[rec.artifact("tflite", tflite), rec.artifact("vela_tflite", compiled.vela_tflite)],
        )
