"""Options shared by `condition tf …` and `condition torch …`, and the one function that turns
them into a RunConfig, runs it with a progress bar and prints the summary."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from condition.backend.budget import Limits, parse_size
from condition.backend.target import MEMORY_MODES, Accelerator, Target
from condition.models import BUILTIN_MODELS
from condition.techniques import (DEFAULT_CHANNEL_LEARNING_RATE, IMAGE_CHANNELS, MIN_KEPT_PER_CHANNEL, MIN_PRUNE_FAN_IN,
                                  MIN_PRUNE_PARAMS, TECHNIQUE_NAMES, CentroidInit, Schedule, Scope, Structure, chain_order,
                                  chain_slug, check_chain, config_type)

TECHNIQUE_CHOICE = click.Choice(TECHNIQUE_NAMES)


class Duration(click.ParamType):
    """`30m`, `1h30m`, `90s` or plain seconds → seconds (condition/durations.py). A bad value is a
    ConfigError, so it is one `condition: error:` line naming the option, like every other bad value."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        from condition.durations import parse_duration

        if isinstance(value, float):
            return value
        option = param.opts[0] if param is not None and param.opts else "duration"
        return parse_duration(value, option)


DURATION = Duration()


def target_options(f: Callable) -> Callable:
    options = [
        # A plain string checked by Target (not click.Choice), so a typo is one `condition: error:` line
        # that lists the valid configurations, like every other bad value.
        click.option("--target", "target", default=Accelerator.U85_128.value, show_default=True, metavar="NPU",
                     help="Ethos-U NPU and MAC count, as Vela names it: " + ", ".join(a.value for a in Accelerator) + "."),
        click.option("--system-config", default=None, metavar="NAME",
                     help="Vela system config (default per NPU: U55 High_End_Embedded, U65 High_End, U85 SYS_DRAM_Mid)."),
        click.option("--memory-mode", default=None, type=click.Choice(MEMORY_MODES),
                     help="Vela memory mode (default: Shared_Sram; U65 Dedicated_Sram_384KB)."),
        click.option("--vela-config", default=None, type=click.Path(dir_okay=False),
                     help="Your own Vela .ini defining system configs and memory modes."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


class SizeType(click.ParamType):
    """A memory size (`256KiB`, `2MiB`, `1.5MB`, plain bytes) → bytes. A bad one raises the project's
    ConfigError, so it is one `condition: error:` line naming the option, not click's usage block."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return parse_size(value, param.opts[0] if param is not None else "size")


SIZE = SizeType()


def limit_options(f: Callable) -> Callable:
    """--sram-limit / --flash-limit: budgets a run is judged by (flagged, exit 3, when over)."""
    options = [
        click.option("--sram-limit", default=None, type=SIZE, metavar="SIZE",
                     help="Budget for Vela's SRAM use (Sram_Only: with the weights), e.g. 256KiB: a run over it is flagged "
                          "(exit 3), a search trial infeasible, advise marks the memory modes that fit."),
        click.option("--flash-limit", default=None, type=SIZE, metavar="SIZE",
                     help="Budget for the deployed artifact's bytes in flash (Vela .tflite / .pte), e.g. 2MiB or 1.5MB; "
                          "judged like --sram-limit."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_limits(opts: dict[str, Any]) -> Limits:
    return Limits(sram_bytes=opts.get("sram_limit"), flash_bytes=opts.get("flash_limit"), max_ms=opts.get("max_ms"))


def image_size_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    from condition.datasets import parse_image_size  # numpy only when the option is used

    return parse_image_size(value)


def run_options(f: Callable) -> Callable:
    options = [
        click.option("--model", default="mlp", show_default=True,
                     help="Built-in name (" + ", ".join(BUILTIN_MODELS) + ") or your own model (see the frontend's --help)."),
        click.option("--dataset", default="fashion-mnist", show_default=True,
                     help="fashion-mnist (Debian package), fashion-mnist-32x32x3 (resized, 3 channels), a folder of MNIST-style "
                          "IDX files, an .npz with x_train/y_train/x_test/y_test (channels last), or an image folder: "
                          "ROOT/train/<class>/*.png|jpg and ROOT/test/ (or val/), or ROOT/<class>/ split by --test-split."),
        click.option("--test-split", default=None, type=click.FloatRange(0, 1, min_open=True, max_open=True), metavar="FRACTION",
                     help="For an image folder of class folders without train/ and test/: the fraction of each class kept "
                          "for testing (stratified, fixed seed) [default: 0.2]."),
        click.option("--image-size", default=None, metavar="N|HxW", callback=image_size_callback,
                     help="Resize every image to N×N or H×W (bilinear); needed when an image folder's images differ in size."),
        click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=0),
                     help="Epochs to train the float model (0 = use an untrained/user model as is)."),
        click.option("--seed", default=0, show_default=True, type=int, help="Seed for weights, shuffling and calibration."),
        click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False),
                     help="Runs land in OUT/<frontend>/<model>/<chain>-<hash>/."),
        click.option("--train-limit", default=None, type=click.IntRange(min=1), help="Train on the first N images only."),
        click.option("--eval-limit", default=None, type=click.IntRange(min=1), help="Evaluate on the first N test images only."),
        click.option("--fvp", "fvp", default=None, is_flag=False, flag_value="auto", metavar="PATH",
                     help="Also run on a Corstone FVP (binary or folder; bare --fvp searches CONDITION_FVP_DIR and PATH)."),
        click.option("--json", "as_json", is_flag=True, help="Print the metrics record as JSON instead of a table."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def technique_options(f: Callable) -> Callable:
    """Every technique's options on every technique command, so `--then` steps can be tuned."""
    options = [
        click.option("--then", "then", multiple=True, type=TECHNIQUE_CHOICE,
                     help=f"Chain another technique (order: {chain_order()})."),
        click.option("--sparsity", default=0.95, show_default=True, type=float, help="prune: fraction of weights set to zero, in [0, 1)."),
        click.option("--structure", default=Structure.UNSTRUCTURED.value, show_default=True,
                     type=click.Choice([s.value for s in Structure]),
                     help="prune: unstructured, or 2:4 (U85's MAC array skips the zeros); "
                          "with 2:4 a --sparsity above 0.5 prunes further inside the pattern."),
        click.option("--schedule", default=Schedule.CONSTANT.value, show_default=True,
                     type=click.Choice([s.value for s in Schedule]), help="prune: all at once, or ramped during fine-tuning."),
        click.option("--scope", default=Scope.LAYER.value, show_default=True, type=click.Choice([s.value for s in Scope]),
                     help="prune: layer = each pruned layer to --sparsity, but never below "
                          f"{MIN_KEPT_PER_CHANNEL} weights per output channel (a layer with 16 per channel stops at 87.5 %; "
                          "the record's note names such layers); global = one |w| ranking "
                          "across them (the seed's; can empty a small layer). Pruned: Conv and Dense with at least "
                          f"{MIN_PRUNE_FAN_IN} weights per output channel and {MIN_PRUNE_PARAMS} in all (2:4: input "
                          "channels a multiple of 4); never depthwise, never the classifier (last layer), never an "
                          f"image stem (a conv reading 1-{IMAGE_CHANNELS} channels). The record names each layer left out and why."),
        click.option("--clusters", default=16, show_default=True, type=int,
                     help="cluster: shared weight values per Conv, depthwise and Dense layer (≥ 2); "
                          "BatchNorm is folded into the conv first."),
        click.option("--centroid-init", default=CentroidInit.KMEANS_PLUS_PLUS.value, show_default=True,
                     type=click.Choice([c.value for c in CentroidInit]), help="cluster: how the centroids start."),
        click.option("--preserve-sparsity/--no-preserve-sparsity", default=True, show_default=True,
                     help="cluster/qat: keep zeros (and clusters) of earlier steps."),
        click.option("--channel-sparsity", default=None, type=float,
                     help="channel-prune: share of each layer's output channels removed, in [0, 1), rounded down to "
                          "the NPU's channel granule (found with Vela for the --target), e.g. 0.5. Without it and without "
                          "--cycle-target: a cycle target of 0.6."),
        click.option("--cycle-target", default=None, type=float,
                     help="channel-prune: instead of a share, reach this fraction of the dense model's NPU cycles (Vela "
                          "estimate; default 0.6); each layer's width is chosen greedily from Vela's cycles of that layer "
                          "on the --target, the stop checked on Vela's estimate of the whole network."),
        click.option("--channel-learning-rate", default=None, type=click.FloatRange(min=0.0, min_open=True, max=1.0),
                     help=f"channel-prune: its fine-tuning's Adam rate, constant (default {DEFAULT_CHANNEL_LEARNING_RATE:g}, twice "
                          "the float rate: a smaller network re-trains; measured on ds-cnn at 0.5× cycles, 1e-3 lost 1.1-2.9 points "
                          "where 2e-3 stayed within 1)."),
        click.option("--fine-tune-epochs", default=None, type=click.IntRange(min=0),
                     help="prune/cluster/channel-prune: epochs of retraining after the technique is applied. Default: cluster 1; "
                          "channel-prune 3; prune 1 "
                          "below sparsity 0.8, from 0.8 up enough epochs for 28/(1 - sparsity) steps of 128 images (0.9: 3 epochs on 12,000 images, "
                          "1 on all 60,000; 0.95: 6 and 2; at most 8). The record says what was used."),
        click.option("--qat-epochs", default=1, show_default=True, type=click.IntRange(min=0),
                     help="qat: fine-tuning epochs with fake quantization."),
        click.option("--distill/--no-distill", default=False, show_default=True,
                     help="prune/cluster/qat fine-tuning: learn from the dense float model's logits as well as the labels "
                          "(knowledge distillation: KL at temperature 4, half and half with cross-entropy; the teacher's "
                          "logits computed once per run). Off by default: measured on ds-cnn, it held the student near a "
                          "float model trained for few epochs (bench/results/recovery.md)."),
        click.option("--calibration-images", default=200, show_default=True, type=click.IntRange(min=1),
                     help="int8 calibration: representative training images."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def build_chain(first: str, then: tuple[str, ...], opts: dict[str, Any]) -> tuple[Any, ...]:
    """One config per technique from the command line options that belong to it, validated by it."""
    steps = []
    for technique in (first, *then):
        cls = config_type(technique)
        steps.append(cls(**{field: opts[cli] for cli, field in cls.cli_options.items() if opts.get(cli) is not None}))
    check_chain(steps)
    return tuple(steps)


def build_target(opts: dict[str, Any]) -> Target:
    return Target.default_for(opts["target"], opts.get("system_config"), opts.get("memory_mode"), opts.get("vela_config"))


def build_run_config(frontend: str, technique: str, opts: dict[str, Any]):
    from condition.run import RunConfig

    return RunConfig(
        frontend=frontend,
        chain=build_chain(technique, tuple(opts.get("then") or ()), opts),
        target=build_target(opts),
        model=opts["model"],
        dataset=opts["dataset"],
        epochs=opts["epochs"],
        seed=opts["seed"],
        out=Path(opts["out"]),
        train_limit=opts.get("train_limit"),
        eval_limit=opts.get("eval_limit"),
        fvp=None if opts.get("fvp") in (None, "auto") else opts["fvp"],
        run_fvp=opts.get("fvp") is not None,
        test_split=opts.get("test_split"),
        image_size=opts.get("image_size"),
        distill=opts.get("distill", False),
        limits=build_limits(opts),
    )


def technique_command(frontend: str, technique: str, help: str, epilog: str, short_help: str | None = None) -> click.Command:
    """`condition <frontend> <technique>` with every shared option; the same wiring for tf and torch."""

    @click.command(name=technique, help=help, epilog=epilog, short_help=short_help)
    @target_options
    @limit_options
    @run_options
    @technique_options
    def command(as_json: bool, **opts: Any) -> None:
        execute(build_run_config(frontend, technique, opts), as_json)

    return command


def execute(config, as_json: bool) -> None:
    """Run one configuration with a progress bar on stderr; print the summary table or JSON."""
    from condition.cli.progress import ProgressBar
    from condition.run import run_config
    from condition.cli.summary import format_summary

    with ProgressBar(f"{config.frontend} {chain_slug(config.chain)}") as bar:
        record = run_config(config, bar.update)
    if as_json:
        click.echo(json.dumps(record.to_dict(), indent=2))
    else:
        click.echo(format_summary(record, config.run_dir()))
    if record.problems:  # a figure that cannot be right is not a result: say so and fail
        for problem in record.problems:
            click.echo(f"condition: result flagged: {problem}", err=True)
        raise click.exceptions.Exit(3)
