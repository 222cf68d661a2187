"""Verdicts on planted data: per-sample outcomes with a known difference on the same seeds."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from dreamsweep.verdicts import CellSamples, compare, interval, p_best, seeds_to_separate

PROMPTS = ["a sks toy on a black background", "a sks toy on a gray background", "a sks toy"]


def table(subject: np.ndarray, fidelity: np.ndarray, drift: np.ndarray) -> CellSamples:
    """A cell as scores.json keeps it: prompts x seeds samples, then the class samples."""
    n_prompts, n_seeds = subject.shape
    units = [("prompt", PROMPTS[p], s) for p in range(n_prompts) for s in range(n_seeds)]
    units += [("class", "a toy", s) for s in range(len(drift))]
    pad = [None] * len(drift)
    saved = {
        "kind": [u[0] for u in units],
        "prompt": [u[1] for u in units],
        "seed": [u[2] for u in units],
        "scores": {
            "subject_rate": subject.ravel().tolist() + pad,
            "prompt_fidelity": fidelity.ravel().tolist() + pad,
            "prior_drift": [None] * subject.size + drift.tolist(),
        },
    }
    return CellSamples.from_saved(saved, "balanced", 0.5)


def planted(rng, seeds: int = 32, flip: float = 0.6):
    """Cell a; cell b = a with a share `flip` of prompt 0's backgrounds lost (overfitting that
    hits one prompt only). The true gap of the objective is known in closed form."""
    subject = (rng.random((3, seeds)) < 0.8).astype(float)
    fidelity = np.ones((3, seeds))
    lost = fidelity.copy()
    lost[0] = (rng.random(seeds) >= flip).astype(float)
    drift = np.zeros(seeds)
    return table(subject, fidelity, drift), table(subject, lost, drift)


TRUE_GAP = 0.8**0.5 * (1 - (1 - 0.6 / 3) ** 0.5)  # sqrt(s) (1 - sqrt(1 - flip / 3)) at s = 0.8


def prompt_sem_verdict(a: CellSamples, b: CellSamples) -> str:
    """What the report judged before: per-prompt objective differences, "within noise" when the
    gap is under two standard errors across the 3 prompts."""

    def per_prompt(cell: CellSamples) -> list[float]:
        out = []
        for prompt in PROMPTS:
            units = [u for u in cell.units if u[1] == prompt] + [
                u for u in cell.units if u[0] == "class"
            ]
            out.append(float(cell.objective(units)))
        return out

    diffs = [x - y for x, y in zip(per_prompt(a), per_prompt(b), strict=True)]
    sem = statistics.stdev(diffs) / len(diffs) ** 0.5
    return "within noise" if statistics.fmean(diffs) <= 2 * sem else "better"


def test_the_paired_interval_covers_a_planted_gap_and_excludes_zero_where_prompt_sem_cannot():
    a, b = planted(np.random.default_rng(1))

    gap = compare(a, b)

    assert gap.paired and gap.units == 3 * 32 + 32
    assert gap.low <= TRUE_GAP <= gap.high
    assert gap.low > 0 and gap.verdict == "better"
    assert prompt_sem_verdict(a, b) == "within noise"  # 2 degrees of freedom: blind to it


def test_the_paired_interval_has_its_coverage_over_many_planted_data_sets():
    rng = np.random.default_rng(2)
    covered = excluded = 0
    for _ in range(60):
        a, b = planted(rng)
        gap = compare(a, b, resamples=500)
        covered += gap.low <= TRUE_GAP <= gap.high
        excluded += gap.low > 0
    assert covered >= 51  # 95% nominal: at least 85% of 60
    assert excluded >= 57


def test_identical_cells_are_within_noise_and_no_pairing_across_other_seeds():
    a, _ = planted(np.random.default_rng(3))
    same = compare(a, a)
    assert (same.estimate, same.low, same.high, same.verdict) == (0.0, 0.0, 0.0, "within noise")

    shifted = CellSamples(tuple((k, p, s + 1000) for k, p, s in a.units), a.scores, "balanced", 0.5)
    unpaired = compare(a, shifted)
    assert not unpaired.paired  # other seeds: other initial noise, nothing to pair
    assert unpaired.verdict == "within noise" and unpaired.high > 0 > unpaired.low


def test_prior_drift_is_resampled_with_the_objective():
    rng = np.random.default_rng(4)
    subject, fidelity = np.ones((3, 16)), np.ones((3, 16))
    kept = table(subject, fidelity, np.zeros(16))
    drifted = table(subject, fidelity, (rng.random(16) < 0.5).astype(float))

    gap = compare(kept, drifted)

    assert gap.estimate == pytest.approx(0.5 * drifted.scores["prior_drift"][-16:].mean())
    assert gap.verdict == "better" and gap.high - gap.low > 0.1


def test_p_best_splits_between_equal_cells_and_leaves_a_worse_one_out():
    rng = np.random.default_rng(5)

    subject = (rng.random((3, 32)) < 0.7).astype(float)
    shuffled = rng.permuted(subject, axis=1)  # the same rates on other seeds: equally good
    first = table(subject, np.ones((3, 32)), np.zeros(32))
    second = table(shuffled, np.ones((3, 32)), np.zeros(32))
    worse = table((rng.random((3, 32)) < 0.3).astype(float), np.ones((3, 32)), np.zeros(32))

    chances = p_best([first, second, worse])

    assert sum(chances) == pytest.approx(1.0)
    assert 0.1 < chances[0] < 0.9 and 0.1 < chances[1] < 0.9
    assert chances[2] < 0.01
    assert p_best([first, first]) == [1.0, 0.0]  # a tie goes to the earlier cell (rank order)


def test_seeds_to_separate_grow_with_the_spread_and_shrink_with_the_gap():
    a, b = planted(np.random.default_rng(6), seeds=8, flip=0.3)
    gap = compare(a, b)
    needed = seeds_to_separate(gap, 8)
    assert needed >= 8
    lo, hi = interval(a)
    assert lo <= float(a.objective(list(a.units))) <= hi
