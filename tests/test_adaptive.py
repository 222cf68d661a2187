"""Adaptive evaluation's decision on planted cells: more seeds only where a verdict is open."""

from __future__ import annotations

import numpy as np

from dreamsweep.cells import Cell, Sampling
from dreamsweep.evaluation.adaptive import Progress, _needing_more
from dreamsweep.evaluation.evaluator import EvalSet, ScoredCell
from dreamsweep.evaluation.sampling import Job
from tests.helpers import compose_config

PROMPTS = ["a sks toy on a black background", "a sks toy on a gray background"]
METRICS = compose_config().metrics


def scored(name: str, subject: list[float], seeds: int = 8) -> Progress:
    """A cell scored on `seeds` seeds per prompt, with these subject decisions."""
    jobs = [Job(p, s) for p in PROMPTS for s in range(seeds)]
    eval_set = EvalSet(PROMPTS, jobs, [i // seeds for i in range(len(jobs))], PROMPTS,
                       [Job("a toy", s) for s in range(seeds)])  # fmt: skip
    per_sample = {
        "subject_rate": subject + [None] * seeds,
        "prompt_fidelity": [1.0] * len(jobs) + [None] * seeds,
        "prior_drift": [None] * len(jobs) + [0.0] * seeds,
    }
    objective = float(np.mean(subject)) ** 0.5
    cell = Cell(100, Sampling("ddim", 20, 3.0), name)
    result = {"scores": {}, "per_prompt": {}, "per_sample": per_sample}
    progress = Progress(cell, None, seeds=seeds)
    progress.scored = ScoredCell(cell, {"objective": objective}, result, eval_set)
    return progress


def test_only_cells_still_close_to_the_best_get_more_seeds():
    rng = np.random.default_rng(0)
    best = scored("ema", (rng.random(16) < 0.8).astype(float).tolist())
    close = scored("raw", (rng.random(16) < 0.75).astype(float).tolist())
    clearly_worse = scored("old", [0.0] * 16)

    pending = _needing_more([best, close, clearly_worse], None, all_seeds=32, metrics=METRICS)

    assert pending == [0, 1]  # the worse cell stops at 8 seeds; the best sharpens with its rival


def test_a_cell_at_every_seed_gets_no_more_and_an_earlier_best_is_the_reference():
    rng = np.random.default_rng(1)
    first = scored("ema", (rng.random(16) < 0.5).astype(float).tolist(), seeds=8)
    second = scored("raw", (rng.random(16) < 0.5).astype(float).tolist(), seeds=8)
    assert _needing_more([first, second], None, all_seeds=8, metrics=METRICS) == []

    earlier = scored("ema", [1.0] * 16).scored.samples(METRICS)
    pending = _needing_more([first, second], (1.0, earlier), all_seeds=32, metrics=METRICS)
    assert pending == []  # both clearly below the run's best of an earlier step
