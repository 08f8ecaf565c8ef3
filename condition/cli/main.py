"""`condition`: the click entry point. Subcommands live in condition/cli/commands/ and load lazily,
so `condition --help` starts without importing tensorflow or torch."""
from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from condition.errors import ConditionError

# name -> "module:attribute"; each module defines one click command or group.
COMMANDS: dict[str, str] = {
    "tf": "condition.cli.commands.tf:tf",
    "torch": "condition.cli.commands.torch:torch_group",
    "measure": "condition.cli.commands.measure:measure",
    "advise": "condition.cli.commands.advise:advise",
    "compare": "condition.cli.commands.compare:compare",
    "report": "condition.cli.commands.compare:report",
    "search": "condition.cli.commands.search:search",
    "fvp": "condition.cli.commands.fvp:fvp",
    "doctor": "condition.cli.commands.doctor:doctor",
}
NOISY_LOGGERS = ("torchao", "torch", "executorch", "tensorflow", "absl", "h5py")
SHORT_HELP: dict[str, str] = {
    "tf": "Condition a Keras model with tfmot → int8 .tflite → Vela.",
    "torch": "Condition a PyTorch model (PT2E, pruning, clustering) → ExecuTorch .pte.",
    "measure": "Measure an existing int8 .tflite or Ethos-U .pte on a Target.",
    "advise": "Which technique will pay on this model and NPU, per layer (Vela MAC sweep).",
    "compare": "Run every technique on both frontends and write a side-by-side report.",
    "report": "Re-render a compare or search report from saved metrics records.",
    "search": "Search technique chains for the fewest cycles and bytes within an accuracy budget (Ray Tune + Optuna).",
    "fvp": "Read Ethos-U PMU counters from FVP/board logs; attach them to runs.",
    "doctor": "Show what is installed, which FVPs/runners were found, what is missing.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        module, attr = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    module = COMMANDS[name].split(":")[0]
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="condition")
def cli(verbose: int) -> None:
    """Condition neural networks for Arm Ethos-U NPUs from TensorFlow and PyTorch, and compare
    what each framework and technique delivers on the same NPU configuration.

    \b
    Typical use:
      condition tf post-training-quant              seed MLP, Fashion-MNIST, U85-128
      condition torch prune --sparsity 0.95         prune, retrain, PT2E int8 → .pte
      condition compare                             both frontends, every technique, one report
      condition doctor                              what is installed and what is missing

    Cycle and traffic figures are Vela compiler estimates unless marked as FVP measurements.
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s")
    if verbose < 2:  # the frameworks warn about optional kernels (triton, cutlass) that do not matter here
        for noisy in NOISY_LOGGERS:
            logging.getLogger(noisy).setLevel(logging.ERROR)
        os.environ.setdefault("TORCH_LOGS", "-torch")  # torch sets its own logger levels on import
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # incl. "failed call to cuInit" on CPU-only machines


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; any ConditionError becomes one line on stderr and exit code 1."""
    try:
        rc = cli.main(args=argv, prog_name="condition", standalone_mode=False)
    except ConditionError as err:
        click.echo(f"condition: error: {err}", err=True)
        return err.exit_code
    except click.exceptions.Abort:
        click.echo("condition: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("condition: interrupted", err=True)
        return 130
    except click.ClickException as err:
        err.show()
        return err.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    return rc if isinstance(rc, int) else 0  # ctx.exit(n) comes back as n in non-standalone mode


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
