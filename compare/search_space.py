"""What `condition search` searches: technique chains in tfmot's collaborative-optimisation order
(prune → cluster? → qat | post-training-quant) and their options, as Optuna parameters, and the runs
a trial and its baseline are.

A trial's parameters are named after the CLI options, so its recipe is a `condition <frontend> prune
…` command line that reproduces the very same run (same configuration hash). Prune and cluster share
one `fine_tune_epochs`, as on the CLI. Clusters 0 means no clustering step.

The space depends on the Target's NPU (`space_for`):
- U85: prune 2:4 with sparsity 0.80–0.98 (step 0.01; above 0.5 the extra zeros are pruned inside
  the 2:4 pattern), constant schedule. U85's MAC array skips 2:4 zeros, so only 2:4 lowers MAC
  cycles; unstructured zeros only shrink the weights (seed MLP, U85-128: unstructured 95 % leaves
  ~47.5k total cycles, 0.29x dense, with or without clustering, while every 2:4 model at 0.79–0.95
  sits at 24–25k). Below 0.8 a 2:4 model has the same cycles and more bytes. One schedule: above
  0.5 the tf side fixes its 2:4 mask once (frontends/tf/prune.py), so a polynomial ramp would
  change torch runs only.
- U55, U65: prune unstructured with sparsity 0.50–0.98, constant or polynomial schedule (these
  NPUs do not skip 2:4 zeros; the pattern would only cost accuracy).
- Both: channel-prune first with a share of 0 (none), 0.5, 0.75 or 0.875 of every layer's channels (the one
  lever that removes MACs on every NPU; the share grid keeps power-of-two widths), fine-tuning epochs 1–3
  (channel-prune, prune and cluster each), clusters 0 (none), 4, 8, 16 or 32, quantization qat (1–2 epochs)
  or post-training-quant.

Seed points, evaluated first on each frontend (`SEED_POINTS`): the space's structure at sparsity
0.95 with 8 clusters and 0.97 with 8 (the first is the hand-picked best found by hand on the seed
MLP), each with 3 fine-tuning epochs and 1 QAT epoch, then a channel seed with 2 fine-tuning epochs per step
(`CHANNEL_SEED`: on U85 a quarter of the channels, 2:4 0.85, 4 clusters, post-training-quant; on U55/U65
half the channels, 0.9, 8 clusters, 1 QAT epoch). The seed baseline is the longest seed's (8 epochs); a
shorter one loads its float model from the float cache.

    params = {"structure": "2:4", "sparsity": 0.95, "schedule": "constant", "fine_tune_epochs": 3,
              "clusters": 8, "quantize": "qat", "qat_epochs": 1}
    config = trial_config(params, base)          # a RunConfig, runs like any other
    baseline = baseline_config(params, base)     # dense post-training-quant, same total epochs
"""
from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from condition.run import RunConfig

# channel-prune first (0: none): the share of every layer's channels removed, on a power-of-two grid so the kept
# counts stay whole granules of the NPU (512 → 256, 128, 64)
CHANNEL_SHARES = (0.0, 0.5, 0.75, 0.875)
# name → ("categorical", choices) | ("int", low, high) | ("float", low, high, step). Conditional:
# qat_epochs only when quantize is "qat". One space per pruning structure; `space_for` picks it by
# the Target's NPU (module docstring: why).
_COMMON: dict[str, tuple[Any, ...]] = {
    "channel_sparsity": ("categorical", CHANNEL_SHARES),
    "fine_tune_epochs": ("int", 1, 3),
    "clusters": ("categorical", (0, 4, 8, 16, 32)),
    "quantize": ("categorical", ("qat", "post-training-quant")),
    "qat_epochs": ("int", 1, 2),
}
SPACES: dict[str, dict[str, tuple[Any, ...]]] = {
    "2:4": {"structure": ("categorical", ("2:4",)), "sparsity": ("float", 0.8, 0.98, 0.01),
            "schedule": ("categorical", ("constant",)), **_COMMON},
    "unstructured": {"structure": ("categorical", ("unstructured",)), "sparsity": ("float", 0.5, 0.98, 0.01),
                     "schedule": ("categorical", ("constant", "polynomial")), **_COMMON},
}
# Evaluated first, in this order, so every search starts from known good points (the best found by hand on
# the seed MLP, the same chain with more zeros, and a quarter of the channels); TPE proposes from then on.
# The channel seed: on U85 a quarter of the channels, where 2:4 already halves the MAC work and the width must go for
# the cycles to (0.038× dense on the seed MLP), at 2:4 0.85 with 4 clusters and post-training-quant: more weights at 2
# bits beat fewer at 4 in the same 12 KiB (all of Fashion-MNIST, vs the 7-epoch dense int8, tf / torch: −0.32 / −0.34
# points at 11.1 / 10.3 KiB, seed 1 −0.13 / −0.44; with 1 QAT epoch −0.40 / −0.94 against 8 epochs; 2:4 0.9 with 16
# clusters and QAT missed, −1.17 / −1.34). On U55/U65 half the channels, whose weight-bound MLP gains from fewer bytes
# and loses less accuracy at half width (bench/results/search_channel.md).
CHANNEL_SEED: dict[str, dict[str, Any]] = {
    "2:4": dict(channel_sparsity=0.75, sparsity=0.85, clusters=4, quantize="post-training-quant"),
    "unstructured": dict(channel_sparsity=0.5, sparsity=0.9, clusters=8, quantize="qat", qat_epochs=1),
}


def _seed_points(structure: str) -> list[dict[str, Any]]:
    common = dict(structure=structure, schedule="constant")
    return [dict(common, channel_sparsity=0.0, sparsity=sparsity, clusters=8, fine_tune_epochs=3, quantize="qat", qat_epochs=1)
            for sparsity in (0.95, 0.97)] + [dict(common, fine_tune_epochs=2, **CHANNEL_SEED[structure])]


SEED_POINTS: dict[str, list[dict[str, Any]]] = {structure: _seed_points(structure) for structure in SPACES}
SEED_POINT: dict[str, Any] = SEED_POINTS["2:4"][0]
NAMES = ("channel_sparsity", "structure", "sparsity", "schedule", "fine_tune_epochs", "clusters", "quantize")


def space_for(target: Any) -> str:
    """The space searched for a Target: "2:4" on U85 (its MAC array skips 2:4 zeros: the only way
    to fewer MAC cycles), "unstructured" elsewhere (U55 and U65 do not skip 2:4 zeros, so the
    pattern would only cost accuracy)."""
    return "2:4" if target.accelerator.family == "u85" else "unstructured"


def define_space(trial: Any, space: str = "2:4") -> None:
    """Optuna define-by-run space (works on an optuna.Trial and on Ray's captor of one)."""
    values = {name: _suggest(trial, name, space) for name in NAMES}
    if values["quantize"] == "qat":
        _suggest(trial, "qat_epochs", space)


def _suggest(trial: Any, name: str, space: str) -> Any:
    kind, *spec = SPACES[space][name]
    if kind == "categorical":
        return trial.suggest_categorical(name, list(spec[0]))
    if kind == "int":
        return trial.suggest_int(name, spec[0], spec[1])
    return trial.suggest_float(name, spec[0], spec[1], step=spec[2])


def distributions(params: dict[str, Any], space: str = "2:4") -> dict[str, Any]:
    """Optuna distributions of the given parameters (to add finished trials to a study on resume)."""
    import optuna

    out: dict[str, Any] = {}
    for name in params:
        kind, *spec = SPACES[space][name]
        if kind == "categorical":
            out[name] = optuna.distributions.CategoricalDistribution(list(spec[0]))
        elif kind == "int":
            out[name] = optuna.distributions.IntDistribution(spec[0], spec[1])
        else:
            out[name] = optuna.distributions.FloatDistribution(spec[0], spec[1], step=spec[2])
    return out


def in_space(params: dict[str, Any], space: str) -> bool:
    """Do normalised `params` lie in the space (a trial of an earlier search may not)?"""
    for name, value in params.items():
        kind, *spec = SPACES[space][name]
        if kind == "categorical" and value not in spec[0] or kind != "categorical" and not spec[0] <= value <= spec[1]:
            return False
    return True


def normalise(params: dict[str, Any]) -> dict[str, Any]:
    """Only the parameters that matter, with clean values (sparsity on its 0.01 grid)."""
    p = {k: params.get(k, 0.0) if k == "channel_sparsity" else params[k] for k in NAMES}  # older trials: no channel step
    p["channel_sparsity"] = float(p["channel_sparsity"])
    p["sparsity"] = round(float(p["sparsity"]), 2)
    p["fine_tune_epochs"] = int(p["fine_tune_epochs"])
    p["clusters"] = int(p["clusters"])
    if p["quantize"] == "qat":
        p["qat_epochs"] = int(params.get("qat_epochs", 1))
    return p


def chain_steps(params: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(technique, options) of a trial, in chain order."""
    p = normalise(params)
    steps: list[tuple[str, dict[str, Any]]] = []
    if p["channel_sparsity"]:
        steps.append(("channel-prune", {"channel_sparsity": p["channel_sparsity"], "fine_tune_epochs": p["fine_tune_epochs"]}))
    steps += [
        ("prune", {"sparsity": p["sparsity"], "structure": p["structure"], "schedule": p["schedule"],
                   "fine_tune_epochs": p["fine_tune_epochs"]})]
    if p["clusters"]:
        steps.append(("cluster", {"clusters": p["clusters"], "fine_tune_epochs": p["fine_tune_epochs"]}))
    steps.append(("qat", {"fine_tune_epochs": p["qat_epochs"]}) if p["quantize"] == "qat" else ("post-training-quant", {}))
    return steps


def build_steps(steps: list[tuple[str, dict[str, Any]]]) -> tuple[Any, ...]:
    """THE one place search turns (technique, options) into a RunConfig chain: the same helper as a
    compare recipe, which fills every option exactly as the CLI does (same configuration hash)."""
    from condition.compare.recipe import make_chain

    return make_chain(steps).steps


def total_epochs(params: dict[str, Any], float_epochs: int) -> int:
    """Every epoch the trial's weights were trained: float + fine-tuning of each step."""
    return float_epochs + sum(int(o.get("fine_tune_epochs", 0)) for _, o in chain_steps(params))


def trial_config(params: dict[str, Any], base: RunConfig) -> RunConfig:
    return dataclasses.replace(base, chain=build_steps(chain_steps(params)))


def baseline_config(params: dict[str, Any], base: RunConfig) -> RunConfig:
    """The dense int8 model trained as long as the trial, so extra fine-tuning is not counted as a gain."""
    return dataclasses.replace(base, chain=build_steps([("post-training-quant", {})]), epochs=total_epochs(params, base.epochs))


def seed_baseline_config(space: str, base: RunConfig) -> RunConfig:
    """The same-epochs baseline of the longest seed point, the one the first trials need: the float
    cache keeps each epoch of its training, so every shorter baseline of the search loads its float
    model from there instead of training it (a longer one trains once, and keeps its epochs too)."""
    return baseline_config(max(SEED_POINTS[space], key=lambda p: total_epochs(p, base.epochs)), base)


def reference_config(base: RunConfig) -> RunConfig:
    """The dense int8 model of the search's own float model (trains the float model trials start from)."""
    return dataclasses.replace(base, chain=build_steps([("post-training-quant", {})]))


def command_line(params: dict[str, Any], base: RunConfig) -> str:
    """`condition <frontend> [channel-prune … --then] prune …` that reproduces the trial (same configuration hash)."""
    steps = chain_steps(params)
    p = normalise(params)
    argv = ["condition", base.frontend, steps[0][0]]
    if p["channel_sparsity"]:
        argv += ["--channel-sparsity", f"{p['channel_sparsity']:g}", "--then", "prune"]
    argv += ["--structure", p["structure"], "--sparsity", f"{p['sparsity']:g}"]
    if p["schedule"] != "constant":
        argv += ["--schedule", p["schedule"]]
    argv += ["--fine-tune-epochs", str(p["fine_tune_epochs"])]
    for technique, options in steps[1 + bool(p["channel_sparsity"]):]:
        argv += ["--then", technique]
        if technique == "cluster":
            argv += ["--clusters", str(options["clusters"])]
        elif technique == "qat":
            argv += ["--qat-epochs", str(options["fine_tune_epochs"])]
    t = base.target
    argv += ["--target", t.accelerator.value, "--system-config", t.system_config, "--memory-mode", t.memory_mode]
    if t.vela_config:
        argv += ["--vela-config", str(t.vela_config)]
    argv += ["--model", base.model, "--dataset", base.dataset, "--epochs", str(base.epochs), "--seed", str(base.seed)]
    for name in ("train_limit", "eval_limit"):
        if getattr(base, name) is not None:
            argv += ["--" + name.replace("_", "-"), str(getattr(base, name))]
    return shlex.join(argv)


def describe(params: dict[str, Any]) -> str:
    """Short label, e.g. 'prune 2:4 95 % → cluster 8 → qat (ft 3, qat 1)'."""
    from condition.compare.recipe import Chain

    p = normalise(params)
    label = Chain(build_steps(chain_steps(p))).label
    epochs = f"ft {p['fine_tune_epochs']}" + (f", qat {p['qat_epochs']}" if "qat_epochs" in p else "")
    return f"{label} ({epochs})"
