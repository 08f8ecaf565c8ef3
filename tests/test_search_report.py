"""`condition search` report: every result beside the two dense int8 models, each labelled — the
dense reference (the search's own dense int8 run) and the trial's same-epochs baseline — and the
best model ranked against the dense reference. Fast: no Ray, no training."""
from __future__ import annotations

import dataclasses

import pytest

from condition.backend.target import Target
from condition.compare.search import TrialOutcome, best_by_frontend, with_references
from condition.compare.search_report import figures_table, summary_lines, trials_table
from condition.compare.search_space import SEED_POINT, normalise, total_epochs


def trial(weights: int, cycles: int, accuracy: float = 0.88, **kw) -> TrialOutcome:
    return TrialOutcome("tf", normalise(SEED_POINT), "ok", accuracy=accuracy, baseline_accuracy=0.884,
                        required_accuracy=0.874, cycles=cycles, weights=weights, baseline_cycles=151_425,
                        baseline_weights=496_192, **kw)


def test_the_report_shows_both_dense_comparisons_each_labelled(tmp_path):
    from condition.backend.metrics import AccuracyResult, VelaEstimate
    from condition.recorder import record_for
    from condition.run import RunConfig

    reference = RunConfig(frontend="tf", chain=(), out=tmp_path)
    record = record_for(reference, status="ok", accuracy=[AccuracyResult(kind="int8", value=0.8559, images=10_000, evaluator="t")],
                        vela=VelaEstimate(accelerator="ethos-u85-128", system_config="s", memory_mode="m", clock_hz=1e9,
                                          original_weight_bytes=535_040, encoded_weight_bytes=538_864, total_cycles=164_446))
    record.write(tmp_path / "tf" / "reference")
    old = trial(25_120, 24_037)  # a ledger entry written before the reference figures were kept per trial
    [filled] = with_references([old], tmp_path, {"tf": "tf/reference"})
    assert (filled.reference_cycles, filled.reference_weights, filled.reference_accuracy) == (164_446, 538_864, 0.8559)
    table = "\n".join(figures_table(filled))
    assert "| dense reference | × dense reference | same-epochs baseline | × same-epochs baseline |" in table
    assert "| 24,037 | 164,446 | 0.146× | 151,425 | 0.159× |" in table
    assert "| 25,120 (24.5 KiB) | 538,864 | 0.047× | 496,192 | 0.051× |" in table
    assert "| 0.8800 | 0.8559 | +2.41 points | 0.8840 | -0.40 points |" in table
    rows = "\n".join(trials_table([filled]))
    assert "| 25,120 | 0.047× | 24,037 | 0.146× |" in rows
    settings = {"model": "mlp", "dataset": "fashion-mnist", "target": Target().as_dict(), "max_accuracy_drop": 1.0,
                "frontends": ["tf"], "epochs": 1, "seed": 0}
    text = "\n".join(summary_lines([filled], {"tf": filled}, settings))
    assert "0.146× dense reference, 0.159× same-epochs baseline" in text
    assert "0.047× dense reference, 0.051× same-epochs baseline" in text


def test_the_best_model_is_ranked_against_the_dense_reference():
    """One denominator for every trial of a frontend: a trial with a longer-trained (smaller,
    faster) baseline does not look worse for it."""
    ref = dict(reference_cycles=164_000, reference_weights=538_000)
    small = trial(24_000, 24_500, **ref)
    fast = dataclasses.replace(trial(30_000, 24_000, **ref), baseline_cycles=120_000, baseline_weights=400_000)
    assert best_by_frontend([fast, small]) == {"tf": small}


def test_a_trial_over_a_limit_is_infeasible_and_counted(tmp_path):
    from condition.backend.budget import Limits
    from condition.compare.search import judged

    limits = Limits(sram_bytes=16 * 1024, max_ms=0.1)
    fits = judged(trial(25_000, 24_000, sram_bytes=8192, flash_bytes=40_000, inference_ms=0.05), limits)
    too_big = judged(trial(20_000, 20_000, sram_bytes=24 * 1024, flash_bytes=30_000, inference_ms=0.02), limits)
    old = judged(trial(19_000, 19_000), limits)  # a ledger entry without the figures cannot be shown to fit
    assert fits.feasible and fits.constraint < 0
    assert not too_big.feasible and too_big.misfit == "does not fit: SRAM 24 KiB > 16 KiB (Vela estimate)"
    assert too_big.constraint == pytest.approx(0.5)  # accuracy is met: the constraint is how far over the limit
    assert not old.feasible and old.over_limit == 1.0
    assert best_by_frontend([too_big, old, fits]) == {"tf": fits}
    assert judged(too_big, Limits()).feasible  # a resumed search without limits judges it again
    settings = {"model": "mlp", "dataset": "fashion-mnist", "target": Target().as_dict(), "max_accuracy_drop": 1.0,
                "frontends": ["tf"], "epochs": 1, "seed": 0, "limits": limits.as_dict()}
    text = "\n".join(summary_lines([fits, too_big, old], best_by_frontend([fits, too_big, old]), settings))
    assert "must fit SRAM ≤ 16 KiB, inference ≤ 0.1 ms" in text
    assert "tf: 3 trials (3 run, 1 within the budget, 2 did not fit, 0 stopped early, 0 failed)" in text
    assert "| does not fit |" in "\n".join(trials_table([too_big]))


def test_a_baseline_under_a_shorter_trained_one_is_noted():
    """tf's 4-epoch dense model once scored 0.857 between 0.8786 (3 epochs) and 0.8794 (5): trials judged against it
    passed leniently, and the summary says so."""
    from condition.compare.search_report import baseline_dips

    short, dipped, fine = (dict(normalise(SEED_POINT), fine_tune_epochs=e, clusters=0, quantize="post-training-quant")
                           for e in (1, 1, 2))
    short = dict(short, channel_sparsity=0.0)       # prune → ptq, ft 1: 2 epochs
    dipped = dict(dipped, channel_sparsity=0.75)    # channel-prune → prune → ptq, ft 1: 3 epochs
    fine = dict(fine, channel_sparsity=0.75)        # ft 2: 5 epochs
    assert [total_epochs(p, 1) for p in (short, dipped, fine)] == [2, 3, 5]
    trials = [dataclasses.replace(trial(9_000, 6_000), params=normalise(short), baseline_accuracy=0.8786),
              dataclasses.replace(trial(9_000, 6_000, accuracy=0.856), params=normalise(dipped), baseline_accuracy=0.857,
                                  required_accuracy=0.847),
              dataclasses.replace(trial(9_000, 6_000), params=normalise(fine), baseline_accuracy=0.8794)]
    assert baseline_dips(trials, 1, 1.0) == [
        "the 3-epoch baseline (0.8570) is 2.16 points under the 2-epoch one (0.8786); 1 trial within the budget was "
        "judged against it, leniently"]
    assert baseline_dips(trials, 1, 5.0) == []  # a dip within half the budget is the usual noise
    settings = {"frontends": ["tf"], "model": "mlp", "dataset": "fashion-mnist", "target": Target.default_for(
        "ethos-u85-128").as_dict(), "max_accuracy_drop": 1.0, "epochs": 1, "seed": 0}
    lines = summary_lines(trials, best_by_frontend(trials), settings)
    assert lines[-1].startswith("tf: note: the 3-epoch baseline (0.8570) is 2.16 points under")
