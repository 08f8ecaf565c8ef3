"""One torch run: float model (cached) → technique chain → int8 → .pte with the Ethos-U delegate
→ the shared backend's Vela CSV parsing, TOSA-reference int8 accuracy, weight stats, optional FVP
→ one MetricsRecord, written by RunRecorder into an atomically-renamed run folder."""
from __future__ import annotations

from pathlib import Path

from condition.backend.metrics import MetricsRecord
from condition.backend.vela import estimate_from_csvs, find_vela_csvs
from condition.datasets import load_dataset
from condition.models import parse_model_spec
from condition.recorder import RunRecorder
from condition.run import Progress, RunConfig, no_progress
from condition.techniques import make_config

QUANTIZERS = ("qat", "post-training-quant")


def run(config: RunConfig, progress: Progress = no_progress) -> MetricsRecord:
    from condition.frontends.torch import accuracy as acc
    from condition.frontends.torch import cluster, export, post_training_quant, prune, qat
    from condition.frontends.torch.float_cache import trained_float_model
    from condition.frontends.torch.models import input_shape_nchw
    from condition.frontends.torch.train import test_tensors
    from condition.frontends.torch.weights import int8_weight_stats

    data = load_dataset(config.dataset).subset(config.train_limit, config.eval_limit)
    spec = parse_model_spec(config.model)
    steps = list(config.chain)
    if not any(s.technique in QUANTIZERS for s in steps):  # a .pte for the NPU is always int8
        steps.append(type(steps[0])("post-training-quant", {}))
    techniques = {"prune": prune.apply, "cluster": cluster.apply, "qat": qat.apply, "post-training-quant": post_training_quant.apply}

    with RunRecorder(config, progress) as rec:
        with rec.step("train float model"):
            model, cached = trained_float_model(spec, config.dataset, data, config.epochs, config.seed, config.train_limit,
                                                Path(config.out), lambda f: progress("train float model", f))
        if cached:
            rec.note("float model taken from the float cache (same model, data, epochs, seed)")
        x, y = test_tensors(data)
        results = [acc.float_accuracy(model, x, y)]

        for step in steps:
            cfg = make_config(step.technique, step.options)
            extra = {"target": config.target} if step.technique in QUANTIZERS else {}
            with rec.step(step.technique):
                model = techniques[step.technique](model, cfg, data, seed=config.seed,
                                                   progress=lambda f, t=step.technique: progress(t, f), **extra)
        if not any(s.technique in QUANTIZERS for s in config.chain):
            rec.note("int8 by post-training quantization (PT2E, EthosUQuantizer symmetric): the .pte is always int8")
        if not post_training_quant.per_channel_weights(model):
            rec.note("clustered weights quantized per tensor so each layer keeps its shared values as int8 codes")
        results.append(acc.fake_quant_accuracy(model, x, y))

        with rec.step("lower to .pte (executorch + vela)"):
            lowered = export.lower(model, export.example_input(input_shape_nchw(data.input_shape)), config.target, rec.work_dir)
        placement = lowered.placement
        vela = None
        if placement.delegates:
            summary, per_layer = find_vela_csvs(lowered.intermediates)
            vela = estimate_from_csvs(summary, per_layer, ops_on_npu=placement.ops_on_npu, cpu_ops=placement.cpu_ops)
            with rec.step("int8 accuracy (tosa reference model)"):
                results.append(acc.int8_accuracy(lowered, x, y, lambda f: progress("int8 accuracy (tosa reference model)", f)))
        else:
            rec.note("the partitioner delegated nothing to the NPU: no Vela estimate and no TOSA int8 accuracy")
        if placement.delegates > 1:
            rec.note(f"{placement.delegates} NPU partitions: Vela's CSVs describe the last one only")
        if placement.cpu_ops:
            rec.note(f"{len(placement.cpu_ops)} ops left on the CPU by the partitioner: {', '.join(sorted(set(placement.cpu_ops)))}")

        artifacts = [rec.artifact("pte", lowered.pte)] + [rec.artifact("tosa", p) for p in lowered.tosa_files]
        fvp = rec.run_fvp(lowered.pte) if config.run_fvp else None
        return rec.finish(accuracy=results, weights=int8_weight_stats(model), vela=vela, artifacts=artifacts, fvp=fvp)
