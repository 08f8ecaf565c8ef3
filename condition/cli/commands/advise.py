"""`condition advise`: before training anything, which technique will pay on this model and this
NPU — the dense int8 model compiled by Vela for the Target and every other MAC size of its family,
each layer classified weight-, memory- or MAC-bound, the techniques ranked with a Vela-based bound.

The dense int8 model comes from an existing artifact (an int8 .tflite, the .tosa the torch
frontend keeps, an Ethos-U .pte with its run folder, or a run folder) or from a post-training-quant
run of a built-in or user model through `condition.run.run_config` (an identical finished run is
reused). Results land in OUT/advise/<name>-<hash>/ (advice.json, Vela's figures per MAC size),
which appears only when everything succeeded.
"""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import click

from condition.backend.advise import ADVICE_NAME, BOUND_LABELS, DEFAULT_CLUSTERS, DEFAULT_SPARSITY, Advice
from condition.backend.atomic import atomic_folder
from condition.backend.target import Target
from condition.backend.budget import Limits, format_size
from condition.cli.commands.common import build_limits, build_target, limit_options, target_options
from condition.errors import ArtifactError, ConfigError

ARTIFACT_KINDS = {"tf": "tflite", "torch": "tosa"}  # the metrics record's artifact Vela re-compiles, per frontend
TOSA_FAMILY = {"+cf": "u85", "+u55": "u55"}  # TOSA profile tag in the file name → NPU family it was made for


def _record(folder: Path):
    from condition.backend.metrics import RECORD_NAME, MetricsRecord

    return MetricsRecord.read(folder) if (folder / RECORD_NAME).is_file() else None


def _check_tosa_family(path: Path, target: Target) -> None:
    """A TOSA graph is lowered for one NPU family (U55/U65 or U85 profile): say so before Vela does."""
    for tag, family in TOSA_FAMILY.items():
        if tag in path.name and (family == "u55") != (target.family in ("u55", "u65")):
            raise ArtifactError(str(path), f"is a TOSA graph for {family.upper()}, not for {target.npu} "
                                           f"(pass a --target of that family, or lower the model again for {target.family.upper()})")


def resolve_artifact(path: Path, target: Target) -> tuple[Path, dict[str, Any]]:
    """The file Vela re-compiles for `path` (a .tflite/.tosa itself, a .pte's TOSA, a run folder's
    artifact) and what to say about where it came from."""
    if not path.exists():
        raise ArtifactError(str(path), "file not found")
    folder = path if path.is_dir() else path.parent
    record = _record(folder)
    info: dict[str, Any] = {"path": str(path)}
    if record is not None:
        info.update(frontend=record.frontend, model=record.model, run_dir=str(folder), config_hash=record.config_hash)
        if record.vela is not None and record.vela.per_layer:  # the model's layer names, as the run recorded them
            info["layer_names"] = [(l.operator, l.name) for l in record.vela.per_layer]
        if record.weights is not None and record.frontend in ARTIFACT_KINDS:  # which layers pruning would touch
            from condition.techniques import prune_policy

            info["prune_left_out"] = prune_policy(record.weights.layers, record.frontend)
    if path.is_dir():
        if record is None:
            raise ArtifactError(str(path), "is a folder without a condition metrics record (give a .tflite, .tosa or .pte)")
        art = record.artifact(ARTIFACT_KINDS.get(record.frontend, ""))
        if art is None:
            raise ArtifactError(str(path), f"its record lists no {ARTIFACT_KINDS.get(record.frontend)} artifact to compile")
        path = folder / art.path
    elif path.suffix.lower() == ".pte":
        path = _tosa_beside_pte(path, record, target)
    if path.suffix.lower() == ".tosa":
        _check_tosa_family(path, target)
    info["compiled"] = str(path)
    info["kind"] = path.suffix.lower().lstrip(".")
    return path, info


def _tosa_beside_pte(pte: Path, record: Any, target: Target) -> Path:
    """A compiled .pte holds Vela's command stream, not the TOSA graph: use the graph the torch
    frontend kept in the run folder's delegate/, after checking the .pte was built for this family."""
    from condition.frontends.torch.pte import read_pte

    delegates, _ = read_pte(pte)
    if not delegates:
        raise ArtifactError(str(pte), "has no Ethos-U delegate (nothing for the NPU to run)")
    built_for = sorted({d.target for d in delegates})
    if any(Target.default_for(t).family != target.family for t in built_for):
        raise ArtifactError(str(pte), f"was compiled for {', '.join(built_for)}; advise compiles the other MAC sizes of "
                                      f"that family only (pass --target {built_for[0]})")
    art = record.artifact("tosa") if record is not None else None
    candidates = [pte.parent / art.path] if art else sorted((pte.parent / "delegate").glob("*.tosa"))
    candidates = [c for c in candidates if c.is_file()]
    if not candidates:
        raise ArtifactError(str(pte), "a compiled .pte holds no TOSA graph for Vela to compile again, and no delegate/*.tosa "
                                      "is beside it (give the .tosa the torch frontend kept, or --frontend torch --model …)")
    return candidates[0]


def dense_artifact(opts: dict[str, Any]) -> tuple[Path, dict[str, Any]]:
    """The dense int8 model of a built-in or user model: a post-training-quant run (reused when an
    identical run already finished)."""
    from condition.cli.commands.common import build_run_config
    from condition.cli.progress import ProgressBar
    from condition.run import run_config

    config = build_run_config(opts["frontend"], "post-training-quant", opts)
    run_dir = config.run_dir()
    record = _record(run_dir)
    if record is None or record.status != "ok" or record.config_hash != config.hash:
        with ProgressBar(f"{config.frontend} dense int8") as bar:
            run_config(config, bar.update)
    path, info = resolve_artifact(run_dir, config.target)
    info["dataset"] = config.dataset
    return path, info


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "model"


MODES_NAME = "memory_modes.json"


def advise_artifact(path: Path, info: dict[str, Any], target: Target, out: Path,
                    sparsity: float = DEFAULT_SPARSITY, clusters: int = DEFAULT_CLUSTERS,
                    limits: Limits | None = None) -> tuple[Advice, Path]:
    """Compile `path` for the Target's family and write OUT/advise/<name>-<hash>/advice.json; with
    `limits` (even empty) also every memory mode and system config, judged by them, in memory_modes.json."""
    from condition.backend.advise import advise
    from condition.backend.metrics import config_hash, tool_versions
    from condition.backend.vela_sweep import compile_family

    st = path.stat()
    identity = {"file": str(path.resolve()), "bytes": st.st_size, "mtime_ns": st.st_mtime_ns, "target": target.as_dict(),
                "sparsity": sparsity, "clusters": clusters}
    name = info.get("model") or path.stem
    folder = out / "advise" / f"{_slug(Path(str(name)).stem if '/' in str(name) else str(name))}-{config_hash(identity)}"
    with atomic_folder(folder) as work:
        names, left_out = info.pop("layer_names", None), info.pop("prune_left_out", None)
        compiles = compile_family(path, target, work / "vela", names)
        advice = advise(compiles, target, info, sparsity, clusters, tool_versions(), left_out)
        advice = dataclasses.replace(advice, rewrites=_rewrites(path, target, work))
        advice.write(work / ADVICE_NAME)
        if limits is not None:
            from condition.backend.atomic import write_json_atomic
            from condition.backend.memory_modes import compile_modes, modes_document

            fits, refused = compile_modes(path, target, work / "memory-modes", limits)
            write_json_atomic(work / MODES_NAME, modes_document(fits, refused, limits))
    return advice, folder


def _rewrites(path: Path, target: Target, work: Path) -> list[str]:
    """Notes on the export rewrites a .tflite would gain from, with Vela's estimate of each gain."""
    if path.suffix.lower() != ".tflite":
        return []
    from condition.backend.lowering_advice import lowering_notes
    from condition.backend.vela import estimate_from_csvs, find_vela_csvs

    estimate = estimate_from_csvs(*find_vela_csvs(work / "vela" / target.npu))  # rows named as Vela wrote them
    return lowering_notes(path, estimate, target, work / "lowering")


def format_modes(doc: dict[str, Any], family: str) -> list[str]:
    """The memory-mode table of `advise`: footprint, cycles and fit per system config × memory mode."""
    limits = Limits.from_dict(doc["limits"])
    rows = [[m["system_config"], m["memory_mode"], format_size(m["sram_bytes"]), format_size(m["flash_used_bytes"]),
             format_size(m["dram_used_bytes"]), format_size(m["model_bytes"]), f"{m['weights_area']} / {m['arena_area']}",
             f"{m['total_cycles']:,}", f"{m['inference_ms']:.3f}",
             ("no: " + m["misfit"].replace("does not fit: ", "") if m["misfit"] else "yes") if limits else "–"] for m in doc["modes"]]
    lines = ["", f"Memory modes: the dense int8 model under every system config and memory mode of {family.upper()} "
                 f"(Vela estimates{'; must fit ' + limits.describe() if limits else ''})"]
    lines += _table(["system config", "memory mode", "SRAM", "flash used", "DRAM used", "model (flash)", "weights / arena in",
                     "total cycles", "ms", "fits"], rows, {2, 3, 4, 5, 7, 8})
    for key, what in (("cheapest", "cheapest that fits (least SRAM, then shortest inference)"),
                      ("fastest", "fastest that fits (inference time at each system config's clock)")):
        m = doc[key]
        lines.append(f"{what}: " + (f"{m['system_config']} · {m['memory_mode']} — SRAM {format_size(m['sram_bytes'])}, "
                                    f"model {format_size(m['model_bytes'])}, {m['total_cycles']:,} cycles, {m['inference_ms']:.3f} ms"
                                    if m else "none"))
    if doc["refused_by_vela"]:
        lines.append(f"not offered (Vela refuses the combination): {len(doc['refused_by_vela'])}, e.g. {doc['refused_by_vela'][0]}")
    return lines


# ---- text ------------------------------------------------------------------------------------

TF_OP_SUFFIXES = ("MatMul", "BiasAdd", "Relu", "Relu6", "Conv2D", "depthwise", "BatchNorm", "FusedBatchNormV3", "Add", "Reshape")


def short_name(name: str, width: int = 30) -> str:
    """`mlp/dense/MatMul;mlp/dense/Relu;…` → `mlp/dense`: the layer, not TF's fused op list."""
    first = name.split(";")[0]
    parts = first.split("/")
    while len(parts) > 1 and parts[-1] in TF_OP_SUFFIXES:
        parts.pop()
    text = "/".join(parts)
    return text if len(text) <= width else "…" + text[-(width - 1):]


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows]


def format_advice(advice: Advice, folder: Path | None = None) -> str:
    t = advice.target
    art = advice.artifact
    compiled = Path(str(art.get("compiled", art.get("path", "")))).name
    what = " · ".join(str(x) for x in (art.get("model"), art.get("frontend"), compiled) if x)
    lines = [f"condition advise — {what}", f"target: {Target.from_dict(t).label()}; "
             f"compiled for {', '.join(str(s['macs']) for s in advice.sweep)} MACs ({advice.family.upper()}). "
             "Every figure is a Vela estimate.", "", advice.verdict, ""]
    lines += [*advice.rewrites, ""] if advice.rewrites else []
    sweep_sizes = [s["accelerator"] for s in advice.sweep]
    at = sweep_sizes.index(t["accelerator"]) if t["accelerator"] in sweep_sizes else -1
    nxt = advice.sweep[at + 1]["macs"] if 0 <= at < len(sweep_sizes) - 1 else None
    rows = []
    for l in advice.layers:
        if l.two_four_eligible is None:
            two_four = "–"
        elif l.two_four_eligible:
            two_four = "yes"
        else:
            two_four = "no (" + l.two_four_reason.replace(" input channels, not a multiple of 4", " input ch.") + ")"
        rows.append([short_name(l.name), l.operator, BOUND_LABELS[l.bound], f"{l.op_cycles:,}", f"{l.share:.1%}", f"{l.npu_cycles:,}",
                     f"{l.weight_cycles:,}", f"{l.feature_map_cycles:,}",
                     f"×{l.more_macs_ratio:.2f}" if l.more_macs_ratio is not None else "–",
                     f"{l.weight_bytes:,}" if l.weight_bytes is not None else "–", two_four])
    lines.append(f"Per layer at {t['accelerator']}: what sets each layer's cycles")
    lines += _table(["layer", "operator", "bound", "cycles", "share", "NPU compute", "weights", "feature maps",
                     f"cycles at {nxt} MACs" if nxt else "more MACs", "encoded weight bytes", "2:4 on U85"], rows, {3, 4, 5, 6, 7, 8, 9})
    lines += ["", "MAC sweep (same model, every MAC size of the family)"]
    dense = advice.dense["total_cycles"] or 1
    lines += _table(["accelerator", "total cycles", "× target", "NPU cycles", "encoded weight bytes"],
                    [[s["accelerator"] + (" (target)" if s["accelerator"] == t["accelerator"] else ""), f"{s['total_cycles']:,}",
                      f"{s['total_cycles'] / dense:.2f}", f"{s['npu_cycles']:,}", f"{s['encoded_weight_bytes']:,}"] for s in advice.sweep],
                    {1, 2, 3, 4})
    lines += ["", f"Techniques ranked by the best case on {t['accelerator']} (Vela-based estimates, not measurements)"]
    rows = []
    for i, b in enumerate(advice.techniques, 1):
        rows.append([str(i), b.label,
                     f"{b.total_cycles:,}" if b.applicable else "–", f"×{b.cycles_vs_dense:.2f}" if b.applicable else "n/a",
                     f"{b.encoded_weight_bytes:,}" if b.applicable else "–", f"×{b.weights_vs_dense:.2f}" if b.applicable else "n/a",
                     f"{len(b.layers_helped)}/{len(advice.layers)}", b.note])
    lines += _table(["#", "technique", "total cycles ≥", "vs dense", "encoded weights ≥", "vs dense", "layers faster", "note"],
                    rows, {2, 3, 4, 5, 6})
    lines += ["", "Rules behind the figures:"] + [f"  {k}: {v}" for k, v in advice.rules.items()]
    if not advice.breakdown:
        lines.append("  (no Vela debug database: memory cycles of layers with MACs counted as weight traffic)")
    if folder is not None:
        lines += ["", f"advice: {folder / ADVICE_NAME}"]
    return "\n".join(lines)


# ---- the command -----------------------------------------------------------------------------

@click.command(name="advise")
@click.argument("artifact", metavar="[FILE]", required=False)
@click.option("--frontend", type=click.Choice(["tf", "torch"]), default="tf", show_default=True,
              help="Which frontend makes the dense int8 model when no FILE is given.")
@target_options
@limit_options
@click.option("--model", default="mlp", show_default=True, help="Built-in name or your model (as for `condition tf|torch`).")
@click.option("--dataset", default="fashion-mnist", show_default=True, help="Data set the float model trains and calibrates on.")
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=0),
              help="Float training epochs (0 for a trained user model).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for weights, shuffling and calibration.")
@click.option("--train-limit", default=None, type=click.IntRange(min=1), help="Train on the first N images only.")
@click.option("--eval-limit", default=None, type=click.IntRange(min=1), help="Evaluate on the first N test images only.")
@click.option("--sparsity", default=DEFAULT_SPARSITY, show_default=True, type=click.FloatRange(0.0, 1.0, max_open=True),
              help="The pruning sparsity the bounds assume.")
@click.option("--clusters", default=DEFAULT_CLUSTERS, show_default=True, type=click.IntRange(min=2),
              help="The cluster count the bounds assume.")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Advice lands in OUT/advise/<name>-<hash>/.")
@click.option("--json", "as_json", is_flag=True, help="Print the advice as JSON (schema: advice_version) instead of a table.")
@click.pass_context
def advise(ctx: click.Context, artifact: str | None, sparsity: float, clusters: int, as_json: bool, **opts: Any) -> None:
    """Which technique will pay on this model and this NPU, per layer, before training anything.

    Compiles the dense int8 model with Vela for the Target and every other MAC size of its family,
    classifies each layer as weight-, memory- or MAC-bound (Vela's cycle breakdown; the MAC sweep as
    evidence), and ranks pruning, 2:4 sparsity and clustering with the best case each can give.
    Then compiles it under every memory mode and system config of the family: SRAM, flash and
    cycles of each, which fit --sram-limit / --flash-limit, and the cheapest that fits.
    Every figure is a Vela estimate.

    \b
    Examples:
      condition advise                                   seed MLP (tf), U85-128
      condition advise --frontend torch --target ethos-u55-128
      condition advise model_int8.tflite --target ethos-u85-256
      condition advise runs/torch/mlp/post-training-quant-<hash>/model.pte
      condition advise --sram-limit 64KiB                the memory modes that fit 64 KiB of SRAM
    """
    from click.core import ParameterSource

    target = build_target(opts)
    if artifact:
        given = [n for n in ("frontend", "model", "dataset", "epochs") if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE]
        if given:
            raise ConfigError("--" + given[0], opts[given[0]], "makes a model to advise on, but FILE was given too",
                              "give FILE or --model, not both")
        path, info = resolve_artifact(Path(artifact), target)
    else:
        opts["out"] = opts.get("out") or "runs"
        # the limits judge the memory modes below, not the dense run
        path, info = dense_artifact({**opts, "fvp": None, "sram_limit": None, "flash_limit": None})
    limits = build_limits(opts)
    result, folder = advise_artifact(path, info, target, Path(opts["out"]), sparsity, clusters, limits)
    modes = json.loads((folder / MODES_NAME).read_text())
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "memory_modes": modes}, indent=2))
    else:
        click.echo(format_advice(result, folder) + "\n" + "\n".join(format_modes(modes, result.family)))
