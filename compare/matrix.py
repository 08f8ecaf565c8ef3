"""Expand a recipe into cells: one RunConfig per frontend × model × data set × target × chain.

Cells that share a trained float model (same frontend, model, data set, epochs, seed, training
subset) form one lane. The runner gives a lane to one worker process: the frontend trains the float
model once and the other chains reuse its cache, and each worker imports only one framework.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from condition.compare.recipe import Recipe
from condition.run import RunConfig


@dataclass(frozen=True)
class Cell:
    """One run of the matrix and the report row it belongs to."""

    config: RunConfig
    label: str

    @property
    def lane(self) -> tuple[object, ...]:
        c = self.config
        return (c.frontend, c.model, c.dataset, c.test_split, c.image_size, c.epochs, c.seed, c.train_limit)

    @property
    def title(self) -> str:
        return f"{self.config.frontend} {self.label}"


def expand(recipe: Recipe, out: str | Path, fvp: str | None = None, run_fvp: bool = False) -> list[Cell]:
    """Every cell of the recipe, lane by lane; duplicates (same configuration hash) appear once."""
    cells: dict[str, Cell] = {}
    for frontend in recipe.frontends:
        for model in recipe.models:
            for dataset in recipe.datasets:
                for target in recipe.targets:
                    for chain in recipe.chains:
                        config = RunConfig(
                            frontend=frontend,
                            chain=chain.steps,
                            target=target,
                            model=model,
                            dataset=dataset,
                            epochs=recipe.epochs,
                            seed=recipe.seed,
                            out=Path(out),
                            train_limit=recipe.train_limit,
                            eval_limit=recipe.eval_limit,
                            fvp=fvp,
                            run_fvp=run_fvp,
                            test_split=recipe.test_split,
                            image_size=recipe.image_size,
                            distill=recipe.distill,
                            limits=recipe.limits,
                        )
                        cells.setdefault(config.hash, Cell(config, chain.label))
    return list(cells.values())


def lanes(cells: list[Cell]) -> list[list[Cell]]:
    """Cells grouped by shared float model, in first-seen order; within a lane the recipe order."""
    groups: dict[tuple[object, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.lane, []).append(cell)
    return list(groups.values())
