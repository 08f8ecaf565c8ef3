"""One run = one model × data set × Target × technique chain on one frontend → one metrics record.

Both frontends implement `run(config, progress) -> MetricsRecord` in frontends/<fw>/pipeline.py;
`compare/` and the CLI only go through `run_config` here.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from condition.backend.metrics import config_hash
from condition.backend.target import Target
from condition.errors import ConfigError
from condition.init import INIT_SCHEME
from condition.models import BUILTIN_MODELS

FRONTENDS = ("tf", "torch")
TECHNIQUES = ("post-training-quant", "qat", "prune", "cluster")

# A progress callback gets (step name, fraction done of that step or None).
Progress = Callable[[str, float | None], None]


def no_progress(step: str, fraction: float | None = None) -> None:
    return None


@dataclass(frozen=True)
class Step:
    """One technique in a chain and its options (e.g. Step("prune", {"sparsity": 0.95}))."""

    technique: str
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.technique not in TECHNIQUES:
            raise ConfigError("technique", self.technique, "unknown technique", "choose one of " + ", ".join(TECHNIQUES))


@dataclass(frozen=True)
class RunConfig:
    frontend: str
    chain: tuple[Step, ...]
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

    def __post_init__(self) -> None:
        if self.frontend not in FRONTENDS:
            raise ConfigError("frontend", self.frontend, "unknown frontend", "choose tf or torch")
        if self.epochs < 0:
            raise ConfigError("--epochs", self.epochs, "must be 0 or more")
        for name in ("train_limit", "eval_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ConfigError("--" + name.replace("_", "-"), v, "must be at least 1")

    @property
    def techniques(self) -> list[str]:
        return [s.technique for s in self.chain]

    def identity(self) -> dict[str, Any]:
        """Everything that changes the result; its hash keys the run folder and resume."""
        return {
            "frontend": self.frontend,
            "chain": [asdict(s) for s in self.chain],
            "target": self.target.as_dict(),
            "model": self.model,
            "dataset": self.dataset,
            "epochs": self.epochs,
            "seed": self.seed,
            "train_limit": self.train_limit,
            "eval_limit": self.eval_limit,
            "run_fvp": self.run_fvp,
            "init": INIT_SCHEME if self.model in BUILTIN_MODELS else None,  # built-ins' starting weights
        }

    @property
    def hash(self) -> str:
        return config_hash(self.identity())

    @property
    def chain_label(self) -> str:
        return "+".join(self.techniques) or "float"

    def run_dir(self) -> Path:
        """OUT/<frontend>/<model>/<technique-chain>-<config hash>/ (STYLE.md rule 10)."""
        model = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(self.model).stem if "/" in self.model else self.model.replace(":", "_"))
        return Path(self.out) / self.frontend / model / f"{self.chain_label}-{self.hash}"


def run_config(config: RunConfig, progress: Progress = no_progress):
    """Dispatch to the frontend lazily so only the framework in use is imported."""
    if config.frontend == "tf":
        from condition.frontends.tf.pipeline import run
    else:
        from condition.frontends.torch.pipeline import run
    return run(config, progress)
