"""One error base class for everything the user can cause; the CLI prints it as one line."""
from __future__ import annotations

from dataclasses import dataclass


class ConditionError(Exception):
    """Base of every expected failure: the CLI prints `str(err)` on one line and exits 1."""

    exit_code = 1


@dataclass
class DatasetError(ConditionError):
    path: str
    problem: str

    def __str__(self) -> str:
        return f"data set {self.path}: {self.problem}"


@dataclass
class UnseenLabelsError(DatasetError):
    """Test labels of classes the training split never holds: the model cannot predict them, so its
    accuracy would be capped (and flagged "near chance") without saying why."""

    labels: tuple[int, ...] = ()
    train_labels: tuple[int, ...] = ()

    def __str__(self) -> str:
        return (f"data set {self.path}: test labels {_ranges(self.labels)} never occur in training "
                f"(train labels {_ranges(self.train_labels)}); give a training split that holds every class")


def _ranges(values: tuple[int, ...]) -> str:
    """(0, 1, 2, 5, 7, 8) → "0-2, 5, 7-8": short, however many classes."""
    parts: list[str] = []
    start = prev = None
    for v in sorted(values):
        if start is None:
            start = prev = v
        elif v == prev + 1:
            prev = v
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = v
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ", ".join(parts)


@dataclass
class ModelError(ConditionError):
    model: str
    problem: str

    def __str__(self) -> str:
        return f"model {self.model}: {self.problem}"


@dataclass
class ArtifactError(ConditionError):
    """A .tflite/.pte/.pt2 file that cannot be used (corrupt, float-only, wrong kind)."""

    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class ConfigError(ConditionError):
    """An option value outside its valid range; `hint` says what to do instead."""

    option: str
    value: object
    problem: str
    hint: str = ""

    def __str__(self) -> str:
        msg = f"{self.option}={self.value!r}: {self.problem}"
        return f"{msg} ({self.hint})" if self.hint else msg


@dataclass
class StepError(ConditionError):
    """An external step (Vela, converter, lowering, FVP) failed on a file."""

    step: str
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.step} failed on {self.path}: {self.problem}"


@dataclass
class RecipeError(ConditionError):
    """A compare recipe (TOML) that cannot be used; names the file and the key at fault."""

    path: str
    key: str
    problem: str

    def __str__(self) -> str:
        where = f"{self.path}: {self.key}" if self.key else self.path
        return f"recipe {where}: {self.problem}"


@dataclass
class ClusterError(ConditionError):
    """Ray could not be started or reached (`compare`/`search` run on Ray)."""

    address: str | None  # None: the embedded local Ray
    problem: str

    def __str__(self) -> str:
        where = f"Ray cluster at {self.address}" if self.address else "embedded Ray"
        return f"{where}: {self.problem}"


@dataclass
class OutBusyError(ConditionError):
    """Another live `compare`/`search` is working on this OUT (compare/out_lock.py)."""

    out: str
    holder: str

    def __str__(self) -> str:
        return f"{self.out} is in use by {self.holder} (wait for it to end, or give another --out)"


def one_line(error: BaseException | str, limit: int = 200) -> str:
    """The first line of an error, trimmed: frameworks raise multi-page messages, we print one line."""
    first = (str(error).strip().splitlines() or [""])[0].strip()
    return first if len(first) <= limit else first[: limit - 1] + "…"
