"""A tqdm bar on stderr that follows a run's steps; silent when stderr is not a terminal."""
from __future__ import annotations

import sys


class ProgressBar:
    def __init__(self, title: str, disable: bool | None = None) -> None:
        self.title = title
        self.disable = (not sys.stderr.isatty()) if disable is None else disable
        self._bar = None
        self._step = ""

    def __enter__(self) -> "ProgressBar":
        from tqdm import tqdm

        self._bar = tqdm(total=100, desc=self.title, unit="%", leave=False, disable=self.disable, file=sys.stderr,
                         bar_format="{desc}: {percentage:3.0f}%|{bar}| {postfix}")
        return self

    def update(self, step: str, fraction: float | None = None) -> None:
        """Show the current step and, when known, how far along that step is."""
        if self._bar is None:
            return
        if step != self._step:
            self._step = step
            self._bar.reset(total=100)
        self._bar.set_postfix_str(step, refresh=False)
        if fraction is not None:
            self._bar.n = int(max(0.0, min(1.0, fraction)) * 100)
        self._bar.refresh()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()
