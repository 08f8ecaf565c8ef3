"""The TensorFlow frontend's side of a run (`condition.pipeline.run` drives it):
float model (trained once, cached) → tfmot techniques on fresh clones → full-int8 .tflite →
weights counted on the exported tensors → Vela → int8 accuracy on the TFLite interpreter.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from condition.backend.metrics import AccuracyResult, WeightStats
from condition.datasets import Dataset, dataset_identity
from condition.frontend import Compiled, FloatModel, StepContext
from condition.frontends.tf import REGISTRY
from condition.frontends.tf import channel_prune, cluster, post_training_quant, prune, qat  # noqa: F401  (they register)
from condition.initial_weights import INIT_SCHEME
from condition.models import CONVNET_GRAPH_VERSION, CONVNETS, parse_model_spec
from condition.run import Progress, RunConfig
from condition.techniques import ClusterConfig, PostTrainingQuantConfig, QatConfig

log = logging.getLogger(__name__)
FLOAT_EVALUATOR = "keras float32"


class TensorFlowFrontend:
    name = "tf"
    registry = REGISTRY

    def pin_threads(self, threads: int) -> None:
        """TensorFlow takes its thread counts once, when its context starts (setting the same counts
        again is a no-op): if that already happened in this process with other counts (a test that
        used TF before any run), the run goes on and a warning says its bytes may differ."""
        from condition.frontends.tf import keras_modules

        threading = keras_modules()[0].config.threading
        try:
            threading.set_intra_op_parallelism_threads(threads)
            threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # context already initialised with other counts
            log.warning("TensorFlow started before the run with %s intra-op threads, not %s: this run's "
                        "artifacts may differ from the same configuration's elsewhere",
                        threading.get_intra_op_parallelism_threads() or "default", threads)

    def batchnorm_note(self, model: Any, trained: bool, train_images: int) -> str | None:
        from condition.frontends.tf.train import batchnorm_note

        return batchnorm_note(model, trained, train_images)

    def float_model(self, config: RunConfig, ds: Dataset, progress: Progress) -> FloatModel:
        """The trained float model, trained at most once per (model, data, epochs, seed, limit)."""
        from condition.frontends.tf import models, train
        from condition.frontends.tf.lowering import npu_friendly

        spec = parse_model_spec(config.model)
        model = models.load_model(spec, ds.input_shape, ds.num_classes, config.seed)
        models.check_compatible(model, ds.input_shape, ds.num_classes, config.model)
        shape = tuple(model.input_shape[1:])
        data = train.TrainData(train.shaped(ds.normalised("train"), shape), ds.y_train,
                               train.shaped(ds.normalised("test"), shape), ds.y_test, seed=config.seed, progress=progress)
        identity = {
            "model": train.model_file_identity(spec.value) if spec.kind == "file" else f"{spec.value}@{INIT_SCHEME}"
            + (f"/graph{CONVNET_GRAPH_VERSION}" if spec.value in CONVNETS else ""),
            "dataset": dataset_identity(config.dataset, config.test_split, config.image_size),
            "epochs": config.epochs, "seed": config.seed, "train_limit": config.train_limit,
        }

        def fit_float(snapshot: Any) -> Any:  # each epoch's model is cached too (train.epoch_snapshots)
            train.fit(model, data, config.epochs, "train float", callbacks=[train.epoch_snapshots(data, config.epochs, snapshot)])
            return model

        trained, cached = train.cached_float_model(Path(config.out) / "tf" / ".float-cache", identity, fit_float)
        trained, notes = npu_friendly(trained)  # after the cache: the trained weights are the same either way
        return FloatModel(trained, data, cached, notes)

    def float_accuracy(self, model: Any, data: Any) -> AccuracyResult:
        from condition.frontends.tf.train import float_accuracy

        return AccuracyResult("float", float_accuracy(model, data), FLOAT_EVALUATOR, len(data.y_test))

    def train_logits(self, model: Any, data: Any) -> Any:
        """The float model's logits for every training image (the distillation teacher's), numpy [N, classes]."""
        from condition.frontends.tf.train import train_logits

        return train_logits(model, data)

    def stage_weights(self, model: Any, ctx: StepContext, work: Path) -> WeightStats:
        from condition.frontends.tf.weights import weight_stats

        return weight_stats(_export(model, ctx, work.with_suffix(".tflite"), per_channel=_per_channel(ctx)), ctx.done)

    def compile(self, model: Any, ctx: StepContext, work: Path) -> Compiled:
        from condition.frontends.tf.accuracy import int8_accuracy
        from condition.backend.layer_names import names_from_rows
        from condition.backend.artifact_memory import vela_tflite_memory
        from condition.backend.vela import compile_tflite
        from condition.frontends.tf.weights import weight_stats

        per_channel = _per_channel(ctx)
        notes = [] if per_channel else ["clustered weights quantized per tensor so each layer keeps its shared values as int8 codes"]
        tflite = _export(model, ctx, work / "model_int8.tflite", per_channel=per_channel)
        compiled = compile_tflite(tflite, ctx.target, work / "vela")
        if compiled.estimate.ops_on_cpu:
            notes.append(f"{compiled.estimate.ops_on_cpu} op(s) stay on the CPU (Vela cannot place them on the NPU): "
                         + ", ".join(compiled.estimate.cpu_ops))
        namer = _layer_namer(model, ctx)
        estimate, weights = names_from_rows(compiled.estimate, weight_stats(tflite, ctx.done, namer), namer)
        data = ctx.data

        def evaluate(progress: Any) -> AccuracyResult:
            return int8_accuracy(tflite, data.x_test, data.y_test)

        return Compiled(artifacts=[("tflite", tflite), ("vela_tflite", compiled.vela_tflite)], weights=weights,
                        vela=estimate, fvp_artifact=compiled.vela_tflite, evaluate=evaluate, notes=notes,
                        memory=vela_tflite_memory(compiled.vela_tflite))


    def measure_artifact(self, path: Path, target: Any, dataset: str | None, eval_limit: int | None,
                         work: Path) -> dict[str, Any]:
        """An int8 .tflite: weights counted on its tensors, Vela compile, interpreter accuracy if data."""
        import shutil

        from condition.backend.layer_names import keras_layer_name, names_from_rows
        from condition.backend.lowering_advice import lowering_notes
        from condition.backend.tflite_file import require_int8
        from condition.backend.vela import compile_tflite
        from condition.frontends.tf.accuracy import int8_accuracy
        from condition.frontends.tf.weights import weight_stats

        require_int8(path)
        local = work / path.name
        shutil.copyfile(path, local)
        compiled = compile_tflite(local, target, work / "vela")
        from condition.backend.artifact_memory import vela_tflite_memory

        rewrites = lowering_notes(local, compiled.estimate, target, work / "lowering")
        estimate, weights = names_from_rows(compiled.estimate, weight_stats(local), lambda t: keras_layer_name(t, t))
        fields: dict[str, Any] = {"weights": weights, "accuracy": [], "vela": estimate, "notes": rewrites,
                                  "artifacts": [("tflite", local), ("vela_tflite", compiled.vela_tflite)],
                                  "memory": vela_tflite_memory(compiled.vela_tflite)}
        if dataset:
            from condition.datasets import load_dataset

            ds = load_dataset(dataset).subset(None, eval_limit)
            fields["accuracy"] = [int8_accuracy(local, ds.normalised("test"), ds.y_test)]
        return fields


def _layer_namer(model: Any, ctx: StepContext) -> Any:
    """Tensor name → Keras layer name; QAT's wrappers (`quant_dense`) answer to their layer's name."""
    from condition.backend.layer_names import keras_layer_name

    qat = _has(ctx, QatConfig)

    def name(tensor: str) -> str:
        layer = keras_layer_name(tensor, model.layers[-1].name)
        return layer.removeprefix("quant_") if qat else layer

    return name


def _per_channel(ctx: StepContext) -> bool:
    """Clustered weights converted without QAT get per-tensor scales (see to_int8_tflite), as on torch."""
    return not (_has(ctx, ClusterConfig) and not _has(ctx, QatConfig))


def _has(ctx: StepContext, config_type: type) -> bool:
    return any(isinstance(c, config_type) for c in ctx.done)


def _export(model: Any, ctx: StepContext, path: Path, per_channel: bool) -> Path:
    """Full-int8 .tflite calibrated on the chain's PTQ calibration count (the default without one)."""
    from condition.frontends.tf.export import to_int8_tflite

    ptq = next((c for c in ctx.done if isinstance(c, PostTrainingQuantConfig)), PostTrainingQuantConfig())
    return to_int8_tflite(model, ctx.data.calibration(ptq.calibration_images), path, per_channel=per_channel)


FRONTEND = TensorFlowFrontend()
