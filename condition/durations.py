"""Durations as people type them: `90s`, `30m`, `1h30m`, `1.5h` or plain seconds (`1800`).

One parser for every place that takes a duration (`condition search --time-budget`), so the
syntax and the error are the same everywhere:

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration("90")
    90.0
"""
from __future__ import annotations

import re

from condition.errors import ConfigError

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_DURATION = re.compile(rf"^(?:({_NUMBER})h)?(?:({_NUMBER})m)?(?:({_NUMBER})s)?$")
SYNTAX = "seconds, or hours/minutes/seconds such as 90s, 30m, 1h30m"


def parse_duration(text: str | float | int, option: str = "duration") -> float:
    """Seconds in `text` (see the module docstring); a ConfigError naming `option` for anything else,
    and for a duration that is not positive."""
    if isinstance(text, bool):
        raise ConfigError(option, text, f"not a duration ({SYNTAX})")
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        value = str(text).strip().lower().replace(" ", "")
        seconds = _seconds(value)
        if seconds is None:
            raise ConfigError(option, text, f"not a duration ({SYNTAX})")
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(option, text, "must be a positive duration")
    return seconds


def _seconds(value: str) -> float | None:
    try:
        return float(value)  # plain seconds
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not value or match is None or not any(match.groups()):
        return None
    return sum(float(part) * unit for part, unit in zip(match.groups(), _UNITS.values()) if part is not None)


def format_duration(seconds: float) -> str:
    """The short form of `seconds` (5400 → "1h30m"), for messages."""
    whole = int(round(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return "".join(f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"
