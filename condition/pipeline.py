"""One run, the same steps on both frontends, so records and step times compare one to one:

load data → train float (cached) → evaluate float → each technique of the chain (intermediate stages
exported and counted on their int8 weights) → export int8 + Vela → evaluate int8 → FVP (optional)
→ one metrics record in an atomically renamed run folder.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from condition.backend.layer_names import names_like
from condition.backend.metrics import MetricsRecord, WeightStats
from condition.datasets import load_dataset
from condition.fine_tuning import FineTune, fine_tune_epochs
from condition.frontend import StepContext
from condition.recorder import RunRecorder
from condition.run import Progress, RunConfig, load_frontend, no_progress
from condition.threads import COMPUTE_THREADS, pin_thread_env
from condition.techniques import PostTrainingQuantConfig

EXPORT_STEP = "export int8 + vela"
EVALUATE_STEP = "evaluate int8"


def run(config: RunConfig, progress: Progress = no_progress) -> MetricsRecord:
    """Condition, export, compile and measure one configuration; returns the written record."""
    pin_thread_env()  # same threads alone, in compare and in tests: same bytes
    with RunRecorder(config, progress) as rec:
        with rec.step("load data"):
            dataset = load_dataset(config.dataset, config.test_split, config.image_size).subset(config.train_limit, config.eval_limit)
        frontend = load_frontend(config.frontend)  # after the data: a bad data set is one line before a framework loads
        frontend.pin_threads(COMPUTE_THREADS)
        with rec.step("train float"):
            start = frontend.float_model(config, dataset, progress)
        if start.cached:
            rec.note("float model from the float cache (trained earlier with the same model, data, epochs, seed)")
        for note in start.notes:
            rec.note(note)
        with rec.step("evaluate float"):
            accuracy = [frontend.float_accuracy(start.model, start.data)]

        model, stages, done = start.model, [], ()
        chain = config.chain
        if not any(step.quantizes for step in chain):  # an artifact for the NPU is always int8
            chain = (*chain, PostTrainingQuantConfig())
            rec.note("int8 by post-training quantization: the NPU artifact is always int8")
        epochs = {step.name: n for step in chain if (n := fine_tune_epochs(step, len(dataset.x_train))) > 0}
        fine_tune, fine_tuning = FineTune(distill=config.distill), {}
        if epochs:
            if config.distill:
                with rec.step("teacher logits"):  # once per run: every fine-tuning step indexes them by batch
                    fine_tune = replace(fine_tune, teacher_logits=frontend.train_logits(start.model, start.data))
            rates = {step.name: r for step in chain if step.name in epochs
                     and (r := fine_tune.for_step(step).peak_learning_rate) != fine_tune.peak_learning_rate}
            fine_tuning = fine_tune.describe(f"the dense float model ({config.model}, {config.epochs} float epoch(s))", epochs, rates)
            rec.note(f"fine-tuning: {fine_tuning['schedule']}; loss {fine_tuning['loss']}"
                     + (f"; teacher {fine_tuning['teacher']}" if fine_tuning["teacher"] else "")
                     + "; epochs " + ", ".join(f"{k} {v}" for k, v in epochs.items())
                     + "".join(f"; {k}'s rate {v:g}" for k, v in rates.items()))
        fields: dict[str, Any] = {}  # record fields a technique fills (ctx.record), e.g. channel-prune's plan
        for i, step in enumerate(chain):
            ctx = StepContext(start.data, config.target, config.seed, done, lambda f, name=step.name: progress(name, f),
                              config.model, note=rec.note, fine_tune=fine_tune.for_step(step), record=fields.__setitem__)
            with rec.step(step.name):
                model = frontend.registry.apply(model, step, ctx)
            done = (*done, step)
            if i < len(config.chain) - 1:  # an intermediate stage of the user's chain: count what it did
                with rec.step(f"export {step.name}"):
                    stats = frontend.stage_weights(model, replace(ctx, done=done), rec.path(f"after_{step.name}_int8"))
                stages.append(WeightStats(layers=stats.layers, stage=step.name))

        trained = config.epochs > 0 or bool(epochs)
        if note := frontend.batchnorm_note(start.model, trained, len(dataset.x_train)):
            rec.note(note)
        ctx = StepContext(start.data, config.target, config.seed, done, lambda f: progress(EXPORT_STEP, f), config.model)
        with rec.step(EXPORT_STEP):
            compiled = frontend.compile(model, ctx, rec.work_dir)
        for note in compiled.notes:
            rec.note(note)
        accuracy += compiled.accuracy
        if compiled.evaluate is not None:
            with rec.step(EVALUATE_STEP):
                accuracy.append(compiled.evaluate(lambda f: progress(EVALUATE_STEP, f)))
        fvp = rec.run_fvp(compiled.fvp_artifact) if config.run_fvp else None
        return rec.finish(
            classes=dataset.num_classes,
            accuracy=accuracy,
            weights=compiled.weights,
            stage_weights=[names_like(stage, compiled.weights) for stage in stages],
            vela=compiled.vela,
            fvp=fvp,
            memory=compiled.memory,
            artifacts=[rec.artifact(kind, path) for kind, path in compiled.artifacts],
            fine_tuning=fine_tuning,
            **fields,
        )
