"""One run = one model × data set × Target × technique chain on one frontend → one metrics record.

Frontends are registered here by import path only (`FRONTENDS`), so the run model never imports a
framework; `condition.pipeline.run` drives either one through the same steps.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from condition.backend.budget import Limits
from condition.backend.metrics import config_hash, installed_version
from condition.backend.target import Target
from condition.channel_plan import PLAN_VERSION
from condition.errors import ConfigError
from condition.fine_tuning import FINE_TUNE_VERSION
from condition.initial_weights import INIT_SCHEME
from condition.models import BUILTIN_MODELS, CONVNET_GRAPH_VERSION, CONVNETS
from condition.threads import COMPUTE_THREADS
from condition.techniques import PRUNE_POLICY_VERSION, TechniqueConfig, chain_slug, config_options

# frontend name -> "module:attribute" of its `condition.frontend.Frontend`
FRONTENDS: dict[str, str] = {
    "tf": "condition.frontends.tf.frontend:FRONTEND",
    "torch": "condition.frontends.torch.frontend:FRONTEND",
}

# The installed tools whose version changes a frontend's artifact bytes or figures, so a run under other
# versions gets another hash (and a resumed compare never mixes them): Vela 5.1.0 → 5.2.0 moved DS-CNN's U55
# cycles by 24 % with the same .pte graph.
RESULT_TOOLS: dict[str, tuple[str, ...]] = {
    "tf": ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ethos-u-vela"),
    "torch": ("torch", "executorch", "torchao", "ethos-u-vela", "tosa-tools", "torch-pruning"),
}
# Raised when an export rewrite of ours changes artifacts (frontends/tf/lowering.py: GlobalAveragePooling2D → AvgPool)
LOWERING_VERSION = 1

# artifact suffix -> the frontend that reads it (`condition measure`)
ARTIFACT_FRONTENDS: dict[str, str] = {".tflite": "tf", ".pte": "torch"}


def load_frontend(name: str) -> Any:
    """The registered frontend object (its framework is imported only now)."""
    module, attr = FRONTENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


# A progress callback gets (step name, fraction done of that step or None).
Progress = Callable[[str, float | None], None]


def no_progress(step: str, fraction: float | None = None) -> None:
    return None


@dataclass(frozen=True)
class RunConfig:
    frontend: str
    chain: tuple[TechniqueConfig, ...]
    target: Target = field(default_factory=Target)
    model: str = "mlp"
    dataset: str = "fashion-mnist"
    epochs: int = 1
    seed: int = 0
    out: Path = Path("runs")
    train_limit: int | None = None  # first N training images (tests, --quick)
    eval_limit: int | None = None  # first N test images for accuracy
    fvp: str | None = None  # FVP binary/folder; None = look in CONDITION_FVP_DIR / PATH only when asked
    run_fvp: bool = False
    test_split: float | None = None  # image folder of class folders only: fraction of each class kept for testing
    image_size: tuple[int, int] | None = None  # (H, W) every image is resized to
    distill: bool = False  # fine-tuning distils from the dense float model (condition/fine_tuning.py)
    # Budgets judge the result (backend/budget.py); they change no byte of the artifact, so they stay out
    # of `identity`: the same model under another limit is the same run folder, reused and judged again,
    # not trained again, and adding a limit does not move every recorded run to a new folder.
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ConfigError("frontend", self.frontend, "unknown frontend", "choose " + " or ".join(FRONTENDS))
        if self.epochs < 0:
            raise ConfigError("--epochs", self.epochs, "must be 0 or more")
        for name in ("train_limit", "eval_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError("--" + name.replace("_", "-"), v, "must be at least 1")

    @property
    def techniques(self) -> list[str]:
        return [c.name for c in self.chain]

    def identity(self) -> dict[str, Any]:
        """Everything that changes the result; its hash keys the run folder and resume."""
        return {
            "frontend": self.frontend,
            "chain": [{"technique": c.name, "options": config_options(c)} for c in self.chain],
            "target": self.target.as_dict(),
            "model": self.model,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "seed": self.seed,
            "train_limit": self.train_limit,
            "eval_limit": self.eval_limit,
            "run_fvp": self.run_fvp,
            "init": INIT_SCHEME if self.model in BUILTIN_MODELS else None,  # built-ins' starting weights
            **({"graph": CONVNET_GRAPH_VERSION} if self.model in CONVNETS else {}),  # the built-in CNNs' graphs
            "compute_threads": COMPUTE_THREADS,  # training sums differ with the thread count
            "tools": result_tool_versions(self.frontend),
            "fine_tune": {"recipe": FINE_TUNE_VERSION, "distill": self.distill},
            "lowering": LOWERING_VERSION,
            **({"prune_policy": PRUNE_POLICY_VERSION} if "prune" in self.techniques else {}),  # which weights prune zeroes
            **({"channel_plan": PLAN_VERSION} if "channel-prune" in self.techniques else {}),  # which widths it plans
            # data options only when set, so the hashes of runs without them stay as they were
            **{k: v for k, v in (("test_split", self.test_split), ("image_size", self.image_size)) if v is not None},
        }

    @property
    def hash(self) -> str:
        return config_hash(self.identity())

    def run_dir(self) -> Path:
        """OUT/<frontend>/<model>/<technique-chain>-<config hash>/: predictable, and keyed by the
        configuration hash so a second run of the same configuration finds (and resumes at) it."""
        model = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model).stem if "/" in self.model else self.model.replace(":", "_"))
        return Path(self.out) / self.frontend / model / f"{chain_slug(self.chain)}-{self.hash}"


def result_tool_versions(frontend: str) -> dict[str, str]:
    """{distribution: installed version} of the tools that shape `frontend`'s results (read from package
    metadata, nothing imported)."""
    return {dist: installed_version(dist) or "not installed" for dist in RESULT_TOOLS.get(frontend, ())}


def run_config(config: RunConfig, progress: Progress = no_progress):
    """Run one configuration on its frontend (imported only now, so only that framework loads)."""
    from condition.pipeline import run

    return run(config, progress)
