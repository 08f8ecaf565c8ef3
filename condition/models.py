"""Names of the built-in models and how a `--model` value is read; the networks themselves are
defined per framework in frontends/<fw>/models.py with the same names and shapes."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BUILTIN_MODELS: dict[str, str] = {
    "mlp": "the seed notebook's MLP: flatten → 512 → 256 → classes (ReLU)",
    "cnn": "a small CNN: conv3x3(16)·pool → conv3x3(32)·pool → dense 64 → classes",
}
DEFAULT_MODEL = "mlp"


@dataclass(frozen=True)
class ModelSpec:
    """What `--model` named: a built-in name, a file, or (torch) a `module:factory`."""

    kind: str  # "builtin" | "file" | "factory"
    value: str

    @property
    def label(self) -> str:
        if self.kind == "file":
            return Path(self.value).stem
        if self.kind == "factory":
            return self.value.rsplit(":", 1)[1]
        return self.value


def parse_model_spec(value: str | None) -> ModelSpec:
    value = value or DEFAULT_MODEL
    if value in BUILTIN_MODELS:
        return ModelSpec("builtin", value)
    if Path(value).exists():
        return ModelSpec("file", value)
    if ":" in value and not value.startswith("/"):
        return ModelSpec("factory", value)
    return ModelSpec("file", value)  # the frontend reports "file not found" with the path
