"""The runner on real (tiny) runs: a cell with a data set that does not exist fails, is recorded as
failed with its error, and the other cell still finishes; a second call skips the finished cell
and retries the failed one; --force redoes everything."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from condition.backend.metrics import RECORD_NAME, MetricsRecord
from condition.compare.matrix import expand
from condition.compare.recipe import Recipe, make_chain
from condition.compare.runner import NoEvents, _Scheduler, is_done, run_cells

from conftest import needs_fashion_mnist  # noqa: E402

pytestmark = [needs_fashion_mnist, pytest.mark.usefixtures("shared_ray")]


class Collect:
    def __init__(self) -> None:
        self.begun: tuple[int, int, int] | None = None
        self.steps: list[str] = []
        self.outcomes = []

    def begin(self, total: int, skipped: int, jobs: int, threads: int, where: str) -> None:
        self.begun = (total, skipped, jobs)

    def step(self, cell, step: str, fraction) -> None:
        self.steps.append(step)

    def done(self, outcome) -> None:
        self.outcomes.append(outcome)


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runner")
    missing = tmp / "no-such-data.npz"
    recipe = Recipe(frontends=("tf",), datasets=("fashion-mnist", str(missing)),
                    chains=(make_chain([("post-training-quant", {"calibration_images": 20})]),),
                    train_limit=300, eval_limit=100)
    cells = expand(recipe, tmp / "out")
    events = Collect()
    outcomes = run_cells(cells, jobs=2, events=events)
    return cells, outcomes, events, missing


def test_a_freed_slot_goes_to_a_ready_cell_of_the_frontend_whose_worker_is_idle(tmp_path):
    """Lane heads first; then the cell that follows a finished one is of the same frontend when one is
    ready (Ray gives it the warm worker), else the next in matrix order."""
    chains = (make_chain([("post-training-quant", {})]), make_chain([("prune", {})]))
    cells = expand(Recipe(frontends=("tf", "torch"), chains=chains), tmp_path)
    tf_head, tf_prune, torch_head, torch_prune = range(4)
    assert [c.config.frontend for c in cells] == ["tf", "tf", "torch", "torch"]
    scheduler = _Scheduler(cells, threads=1, slots=2, events=NoEvents(), outcomes={}, out=tmp_path)

    def take() -> int | None:
        i = scheduler._next()
        if i is not None:
            scheduler.waiting.remove(i)
        return i

    assert (take(), take(), take()) == (tf_head, torch_head, None)  # the prune cells wait for their lane's head
    scheduler.done |= {tf_head, torch_head}
    scheduler.freed.append("torch")
    assert take() == torch_prune  # before tf's prune, which comes first in the matrix
    assert take() == tf_prune


def test_failing_cell_is_recorded_and_the_other_finishes(first_run):
    cells, outcomes, events, missing = first_run
    assert [o.status for o in outcomes] == ["ok", "failed"]
    assert events.begun == (2, 0, 2)
    assert any("vela" in s for s in events.steps)  # steps of the running cell reached the progress callback
    ok = MetricsRecord.read(cells[0].config.run_dir())
    assert ok.status == "ok" and ok.config_hash == cells[0].config.hash and ok.vela is not None
    failed = MetricsRecord.read(cells[1].config.run_dir())
    assert failed.status == "failed" and str(missing) in failed.error
    assert failed.frontend == "tf" and failed.techniques == ["post-training-quant"] and failed.config_hash == cells[1].config.hash
    assert outcomes[1].error == failed.error
    assert (cells[1].config.run_dir() / "error.log").read_text().strip()  # the traceback, for whoever debugs it
    leftovers = [p.name for c in cells for p in c.config.run_dir().parent.iterdir() if p.name.startswith(".") and "partial" in p.name]
    assert leftovers == []


def test_second_run_skips_finished_cells_and_retries_failed_ones(first_run):
    cells, _, _, _ = first_run
    record_path = cells[0].config.run_dir() / RECORD_NAME
    before = record_path.stat().st_mtime_ns
    events = Collect()
    outcomes = run_cells(cells, jobs=2, events=events)
    assert [o.status for o in outcomes] == ["skipped", "failed"]
    assert events.begun == (2, 1, 1)
    assert record_path.stat().st_mtime_ns == before


def test_force_redoes_finished_cells(first_run):
    cells, _, _, _ = first_run
    before = MetricsRecord.read(cells[0].config.run_dir())
    outcomes = run_cells(cells[:1], jobs=1, force=True)
    assert [o.status for o in outcomes] == ["ok"]
    after = MetricsRecord.read(cells[0].config.run_dir())
    assert after.step_seconds != before.step_seconds  # a new run, not the old file
    assert after.accuracy == before.accuracy  # same configuration, same seed: same figures


def test_a_record_counts_as_done_only_if_ok_and_for_the_same_configuration(first_run, tmp_path):
    cells, _, _, _ = first_run
    ok_cell, failed_cell = cells
    assert is_done(ok_cell.config) and not is_done(failed_cell.config)
    path = ok_cell.config.run_dir() / RECORD_NAME
    original = path.read_text()
    try:
        data = json.loads(original)
        data["config_hash"] = "0123456789"
        path.write_text(json.dumps(data))
        assert not is_done(ok_cell.config)
        path.write_text("{ not json")
        assert not is_done(ok_cell.config)
    finally:
        path.write_text(original)
    assert is_done(ok_cell.config)
    assert not is_done(expand(Recipe(frontends=("torch",), chains=(make_chain([("qat", {})]),)), Path(tmp_path))[0].config)


def test_a_cell_whose_figures_cannot_be_right_is_flagged_by_compare(tmp_path, capsys):
    """An untrained model (--epochs 0) is at chance: compare says FLAGGED with the reason, exits 1,
    lists it in the report instead of its figures, and does not run it again (same bytes, same flag)."""
    from condition.cli import main

    recipe = tmp_path / "untrained.toml"
    recipe.write_text('frontends = ["tf"]\nepochs = 0\ntrain_limit = 64\neval_limit = 300\n'
                      '[[chains]]\nsteps = [{technique = "post-training-quant", calibration_images = 20}]\n')
    out = tmp_path / "out"
    assert main(["compare", "--recipe", str(recipe), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "FLAGGED after" in err and "near chance" in err and "1 of 1 cells flagged" in err
    assert "| flagged: float accuracy" in (out / "report.md").read_text()
    assert main(["compare", "--recipe", str(recipe), "--out", str(out)]) == 1
    again = capsys.readouterr().err
    assert "1 already done" in again and "1 of 1 cells flagged" in again
