"""What `condition compare` runs: models × data sets × targets × technique chains × frontends.

A recipe is a TOML file (read with tomllib) or the built-in default matrix. There is no float
cell: every run records the accuracy of the (cached, shared) float model it started from, and the
report's float reference row is taken from those records. Every value is checked
here, before any run starts, so a typo fails in a second with the file and key named instead of
after twenty minutes of training.

    frontends = ["tf", "torch"]
    models = ["mlp"]
    datasets = ["fashion-mnist"]
    targets = ["ethos-u85-128"]          # or [{accelerator = "...", system_config = "...", memory_mode = "..."}]
    epochs = 1
    seed = 0
    # test_split = 0.2                   # image folders of class folders: fraction of each class for testing
    # image_size = 32                    # or "32x48" (H×W): every data set's images resized
    # sram_limit = "256KiB"              # budgets: a cell over one is flagged ("does not fit: …")
    # flash_limit = "2MiB"               # sizes as on the CLI (KiB/MiB ×1024, KB/MB ×1000, or plain bytes)
    [[chains]]
    steps = ["post-training-quant"]       # the int8 baseline every ratio divides by
    [[chains]]
    steps = [{technique = "prune", sparsity = 0.95}, "cluster", "qat"]
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from condition.backend.budget import Limits, parse_size
from condition.backend.target import Target
from condition.errors import ConditionError, RecipeError
from condition.run import FRONTENDS
from condition.techniques import (TECHNIQUE_NAMES, ClusterConfig, PostTrainingQuantConfig, PruneConfig, QatConfig, Structure,
                                  TechniqueConfig, chain_label, check_chain, config_type, make_config)

DEFAULT_SOURCE = "built-in default matrix"
QUICK_TRAIN_LIMIT = 2000
QUICK_EVAL_LIMIT = 300
TOP_LEVEL_KEYS = ("frontends", "models", "datasets", "targets", "chains", "epochs", "seed", "train_limit", "eval_limit",
                  "test_split", "image_size", "distill", "sram_limit", "flash_limit")
TARGET_KEYS = ("accelerator", "system_config", "memory_mode", "vela_config")


@dataclass(frozen=True)
class Chain:
    """One row of the report: a technique chain with full options."""

    steps: tuple[TechniqueConfig, ...]
    name: str = ""  # optional row label; default is derived from the configs (see `chain_label`)

    @property
    def label(self) -> str:
        return self.name or chain_label(self.steps)


@dataclass(frozen=True)
class Recipe:
    frontends: tuple[str, ...] = tuple(FRONTENDS)
    models: tuple[str, ...] = ("mlp",)
    datasets: tuple[str, ...] = ("fashion-mnist",)
    targets: tuple[Target, ...] = field(default_factory=lambda: (Target.default_for(),))
    chains: tuple[Chain, ...] = ()
    epochs: int = 1
    seed: int = 0
    train_limit: int | None = None
    eval_limit: int | None = None
    test_split: float | None = None  # for every image folder of class folders in `datasets`
    image_size: tuple[int, int] | None = None  # (H, W) for every data set
    distill: bool = False  # fine-tuning distils from the dense float model (condition/fine_tuning.py)
    limits: Limits = field(default_factory=Limits)  # budgets every cell is judged by (not part of its hash)
    source: str = DEFAULT_SOURCE


def record_chain_label(techniques: list[str], options: dict[str, dict[str, Any]]) -> str:
    """The row label of a metrics record's chain (its technique names and options), so
    `condition report` labels rows without the recipe."""
    return chain_label([make_config(t, options.get(t, {})) for t in techniques])


def make_chain(steps: list[tuple[str, dict[str, Any]]], name: str = "") -> Chain:
    """Steps with every option filled in by the technique's config, exactly as the CLI builds them,
    so a compare cell and the same `condition tf …` run share a configuration hash."""
    chain = tuple(make_config(t, o) for t, o in steps)
    check_chain(chain)
    return Chain(chain, name)


def default_chains() -> tuple[Chain, ...]:
    return (
        Chain((PostTrainingQuantConfig(),)),
        Chain((QatConfig(),)),
        Chain((PruneConfig(sparsity=0.95),)),
        Chain((PruneConfig(sparsity=0.5, structure=Structure.TWO_FOUR),)),
        Chain((ClusterConfig(clusters=16),)),
        Chain((PruneConfig(sparsity=0.95), ClusterConfig(clusters=16, preserve_sparsity=True), QatConfig(preserve=True))),
    )


def default_recipe(quick: bool = False) -> Recipe:
    """default_chains (each technique alone, prune 2:4, and prune → cluster → qat) on the seed MLP,
    Fashion-MNIST, U85-128; `quick` trains and evaluates on small subsets so the whole matrix is a
    smoke test of every path in under a minute on 2 cores."""
    recipe = Recipe(chains=default_chains())
    return quicken(recipe) if quick else recipe


def quicken(recipe: Recipe) -> Recipe:
    """Small subsets for a smoke run (keeps limits a recipe already set lower); prune fine-tunes one epoch
    unless the recipe says otherwise (on 2,000 images it would choose up to 8: recovery is not what a smoke
    run checks)."""
    return dataclasses.replace(
        recipe,
        chains=tuple(dataclasses.replace(c, steps=tuple(_one_epoch(s) for s in c.steps)) for c in recipe.chains),
        train_limit=min(recipe.train_limit or QUICK_TRAIN_LIMIT, QUICK_TRAIN_LIMIT),
        eval_limit=min(recipe.eval_limit or QUICK_EVAL_LIMIT, QUICK_EVAL_LIMIT),
        epochs=min(recipe.epochs, 1),
        source=recipe.source + " (--quick)",
    )


def _one_epoch(step: TechniqueConfig) -> TechniqueConfig:
    if getattr(step, "fine_tune_epochs", 0) is None:  # a prune that would choose its epochs
        return dataclasses.replace(step, fine_tune_epochs=1)
    return step


def load_recipe(path: str | Path) -> Recipe:
    """Read and check a TOML recipe; every problem is a RecipeError naming the file and key."""
    path = Path(path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise RecipeError(where, "", "file not found") from None
    except IsADirectoryError:
        raise RecipeError(where, "", "is a folder, not a .toml file") from None
    except UnicodeDecodeError:
        raise RecipeError(where, "", "not a text file") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(where, "", f"not valid TOML ({exc})") from None
    return parse_recipe(data, where)


def parse_recipe(data: dict[str, Any], where: str) -> Recipe:
    unknown = sorted(set(data) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise RecipeError(where, unknown[0], "unknown key (known: " + ", ".join(TOP_LEVEL_KEYS) + ")")
    base = Recipe()
    frontends = _strings(data, "frontends", where, base.frontends)
    for i, fw in enumerate(frontends):
        if fw not in FRONTENDS:
            raise RecipeError(where, f"frontends[{i}]", f"{fw!r} is not a frontend (choose tf or torch)")
    if "chains" not in data:
        raise RecipeError(where, "chains", "missing: list at least one [[chains]] table")
    raw_chains = data["chains"]
    if not isinstance(raw_chains, list) or not raw_chains:
        raise RecipeError(where, "chains", "must be a non-empty array of tables ([[chains]])")
    chains = tuple(_chain(c, where, f"chains[{i}]") for i, c in enumerate(raw_chains))
    seen: dict[str, int] = {}
    for i, chain in enumerate(chains):
        if chain.label in seen:
            raise RecipeError(where, f"chains[{i}]", f"same report row as chains[{seen[chain.label]}] ({chain.label!r}); "
                                                     "give one a different `name` or different options")
        seen[chain.label] = i
    return Recipe(
        frontends=frontends,
        models=_strings(data, "models", where, base.models),
        datasets=_strings(data, "datasets", where, base.datasets),
        targets=_targets(data, where),
        chains=chains,
        epochs=_int(data, "epochs", where, 1, minimum=0),
        seed=_int(data, "seed", where, 0, minimum=None),
        train_limit=_int(data, "train_limit", where, None, minimum=1),
        eval_limit=_int(data, "eval_limit", where, None, minimum=1),
        **_data_options(data, where),
        distill=_bool(data, "distill", where, False),
        limits=Limits(sram_bytes=_size(data, "sram_limit", where), flash_bytes=_size(data, "flash_limit", where)),
        source=where,
    )


def _size(data: dict[str, Any], key: str, where: str) -> int | None:
    """A budget key: a size string ("256KiB") or plain bytes, parsed as the CLI parses it."""
    if key not in data:
        return None
    try:
        return parse_size(data[key], key)
    except ConditionError as err:
        raise RecipeError(where, key, err.problem + (f" ({err.hint})" if getattr(err, "hint", "") else "")) from None


def _data_options(data: dict[str, Any], where: str) -> dict[str, Any]:
    """`test_split` (a fraction) and `image_size` (N, "HxW" or [H, W]), checked as the CLI checks them."""
    from condition.datasets import check_test_split, parse_image_size

    out: dict[str, Any] = {}
    for key, check in (("test_split", check_test_split), ("image_size", parse_image_size)):
        if key in data:
            value = data[key]
            if key == "test_split" and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise RecipeError(where, key, f"must be a number between 0 and 1, not {value!r}")
            try:
                out[key] = check(value, key)
            except ConditionError as err:
                raise RecipeError(where, key, err.problem + (f" ({err.hint})" if getattr(err, "hint", "") else "")) from None
    return out


def _strings(data: dict[str, Any], key: str, where: str, default: tuple[str, ...]) -> tuple[str, ...]:
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise RecipeError(where, key, "must be a non-empty list of strings")
    return tuple(dict.fromkeys(value))  # keep order, drop repeats


def _int(data: dict[str, Any], key: str, where: str, default: int | None, minimum: int | None) -> int | None:
    if key not in data:
        return default
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecipeError(where, key, f"must be an integer, not {value!r}")
    if minimum is not None and value < minimum:
        raise RecipeError(where, key, f"must be at least {minimum}, not {value}")
    return value


def _bool(data: dict[str, Any], key: str, where: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise RecipeError(where, key, f"must be true or false, not {value!r}")
    return value


def _targets(data: dict[str, Any], where: str) -> tuple[Target, ...]:
    raw = data.get("targets", ["ethos-u85-128"])
    if isinstance(raw, (str, dict)):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise RecipeError(where, "targets", "must be a non-empty list of NPU names or tables")
    targets = []
    for i, t in enumerate(raw):
        key = f"targets[{i}]"
        if isinstance(t, str):
            t = {"accelerator": t}
        if not isinstance(t, dict):
            raise RecipeError(where, key, "must be an NPU name like 'ethos-u85-128' or a table")
        unknown = sorted(set(t) - set(TARGET_KEYS))
        if unknown:
            raise RecipeError(where, f"{key}.{unknown[0]}", "unknown key (known: " + ", ".join(TARGET_KEYS) + ")")
        if "accelerator" not in t:
            raise RecipeError(where, key, "missing accelerator (e.g. 'ethos-u85-128')")
        try:
            targets.append(Target.default_for(t["accelerator"], t.get("system_config"), t.get("memory_mode"), t.get("vela_config")))
        except ConditionError as err:
            raise RecipeError(where, key, str(err)) from None
    return tuple(dict.fromkeys(targets))


def _chain(raw: Any, where: str, key: str) -> Chain:
    if not isinstance(raw, dict):
        raise RecipeError(where, key, "must be a table with `steps`")
    unknown = sorted(set(raw) - {"steps", "name"})
    if unknown:
        raise RecipeError(where, f"{key}.{unknown[0]}", "unknown key (known: steps, name)")
    if "steps" not in raw or not isinstance(raw["steps"], list):
        raise RecipeError(where, f"{key}.steps", "missing: a list of techniques, e.g. [\"prune\", \"qat\"]")
    if not raw["steps"]:
        raise RecipeError(where, f"{key}.steps", "is empty; the float reference row is always shown (taken from the float "
                                                 "accuracy every run records), so list techniques only")
    name = raw.get("name", "")
    if not isinstance(name, str):
        raise RecipeError(where, f"{key}.name", "must be a string")
    steps: list[tuple[str, dict[str, Any]]] = []
    for j, s in enumerate(raw["steps"]):
        skey = f"{key}.steps[{j}]"
        if isinstance(s, str):
            s = {"technique": s}
        if not isinstance(s, dict) or "technique" not in s:
            raise RecipeError(where, skey, "must be a technique name or a table with `technique`")
        options = {k: v for k, v in s.items() if k != "technique"}
        technique = s["technique"]
        if technique not in TECHNIQUE_NAMES:
            raise RecipeError(where, f"{skey}.technique", f"unknown technique {technique!r} (choose one of {', '.join(TECHNIQUE_NAMES)})")
        known = list(config_type(technique).__dataclass_fields__)
        for option in options:
            if option not in known:
                raise RecipeError(where, f"{skey}.{option}", f"not an option of {technique} (known: {', '.join(known)})")
        steps.append((technique, options))
    try:
        return make_chain(steps, name)
    except ConditionError as err:
        raise RecipeError(where, key, str(err)) from None
    except (TypeError, ValueError) as err:  # e.g. structure = "3:4" fails the enum
        raise RecipeError(where, key, f"bad option value ({err})") from None
