"""The PyTorch frontend's side of a run (`condition.pipeline.run` drives it):
float model (cached) → techniques → PT2E int8 (EthosUQuantizer) → .pte with the Ethos-U delegate
→ Vela's CSVs of the delegated graph, weight stats on the int8 tensors, TOSA-reference int8 accuracy.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from condition.backend.metrics import AccuracyResult, WeightStats
from condition.datasets import Dataset, dataset_identity
from condition.frontend import Compiled, FloatModel, StepContext
from condition.frontends.torch import REGISTRY
from condition.frontends.torch import channel_prune, cluster, post_training_quant, prune, qat  # noqa: F401  (they register)
from condition.models import parse_model_spec
from condition.run import Progress, RunConfig
from condition.techniques import PostTrainingQuantConfig


class TorchFrontend:
    name = "torch"
    registry = REGISTRY

    def pin_threads(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def batchnorm_note(self, model: Any, trained: bool, train_images: int) -> str | None:
        from condition.frontends.torch.train import batchnorm_note

        return batchnorm_note(model, trained, train_images)

    def float_model(self, config: RunConfig, ds: Dataset, progress: Progress) -> FloatModel:
        from condition.frontends.torch.float_cache import trained_float_model

        data_id = dataset_identity(config.dataset, config.test_split, config.image_size)
        model, cached = trained_float_model(parse_model_spec(config.model), data_id, ds, config.epochs, config.seed,
                                            config.train_limit, Path(config.out), lambda f: progress("train float", f))
        return FloatModel(model, ds, cached)

    def float_accuracy(self, model: Any, data: Dataset) -> AccuracyResult:
        from condition.frontends.torch.accuracy import float_accuracy
        from condition.frontends.torch.train import test_tensors

        return float_accuracy(model, *test_tensors(data))

    def train_logits(self, model: Any, data: Any) -> Any:
        """The float model's logits for every training image (the distillation teacher's), numpy [N, classes]."""
        from condition.frontends.torch.train import train_logits

        return train_logits(model, data)

    def stage_weights(self, model: Any, ctx: StepContext, work: Path) -> WeightStats:
        """The stage quantized as the chain's end would (PT2E, same calibration), counted on its int8 tensors."""
        from condition.frontends.torch.weights import int8_weight_stats

        return int8_weight_stats(REGISTRY.apply(model, PostTrainingQuantConfig(), ctx), ctx.done)

    def compile(self, model: Any, ctx: StepContext, work: Path) -> Compiled:
        from condition.backend.layer_names import names_from_weights, names_of_unweighted_rows
        from condition.backend.vela import estimate_from_csvs, find_vela_csvs
        from condition.frontends.torch import accuracy as acc
        from condition.frontends.torch import export
        from condition.frontends.torch.models import input_shape_nchw
        from condition.frontends.torch.train import test_tensors
        from condition.frontends.torch.weights import int8_weight_stats, unweighted_op_names

        data: Dataset = ctx.data
        notes = []
        if not post_training_quant.per_channel_weights(model):
            notes.append("clustered weights quantized per tensor so each layer keeps its shared values as int8 codes")
        x, y = test_tensors(data)
        weights = int8_weight_stats(model, ctx.done)
        fake_quant = acc.fake_quant_accuracy(model, x, y)
        lowered = export.lower(model, export.program_input(input_shape_nchw(data.input_shape)), ctx.target, work)
        placement = lowered.placement
        vela, evaluate = None, None
        if placement.delegates:
            summary, per_layer = find_vela_csvs(lowered.intermediates)
            vela = estimate_from_csvs(summary, per_layer, ops_on_npu=placement.ops_on_npu, cpu_ops=placement.cpu_ops)
            vela, weights = names_from_weights(vela, weights)  # Vela's rows take the model's module names
            vela = names_of_unweighted_rows(vela, unweighted_op_names(model))
            notes.append(f"Ethos-U delegate compiled in-process by Vela {export.delegate_vela_version()} "
                         "(the ethosu.vela module ExecuTorch's Arm backend called)")

            def evaluate(progress: Any) -> AccuracyResult:
                return acc.int8_accuracy(lowered, x, y, progress)
        else:
            notes.append("the partitioner delegated nothing to the NPU: no Vela estimate and no TOSA int8 accuracy")
        if placement.delegates > 1:
            notes.append(f"{placement.delegates} NPU partitions: Vela's CSVs describe the last one only")
        if placement.cpu_ops:
            notes.append(f"{len(placement.cpu_ops)} ops left on the CPU by the partitioner: {', '.join(sorted(set(placement.cpu_ops)))}")
        from condition.frontends.torch.pte import pte_memory

        return Compiled(artifacts=[("pte", lowered.pte)] + [("tosa", p) for p in lowered.tosa_files],
                        weights=weights, vela=vela, fvp_artifact=lowered.pte, evaluate=evaluate,
                        notes=notes, accuracy=[fake_quant], memory=pte_memory(lowered.pte))


    def measure_artifact(self, path: Path, target: Any, dataset: str | None, eval_limit: int | None,
                         work: Path) -> dict[str, Any]:
        """An Ethos-U .pte: its delegates read and checked against the Target."""
        from condition.frontends.torch.pte import measure_pte

        return measure_pte(path, target, dataset, eval_limit, work)

FRONTEND = TorchFrontend()
