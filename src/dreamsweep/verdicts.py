"""Verdicts over paired samples: is one cell better than another, and which could be best?

Every cell samples the same prompts with the same seeds from the same initial noise, so two
cells (of one run or of two runs of a sweep) are compared sample by sample: a unit is
(kind, prompt, seed), kind being the prompt suite or the class prompt. The uncertainty comes
from a bootstrap that resamples seeds within each prompt (the prompt suite is fixed: a verdict
is about this suite) and recomputes each cell's objective on the resample, prior drift
included (the objective is no mean of per-sample values: metrics/aggregate.py and
metrics/objective.py make it, the same code as the run's). Percentile intervals at 95%; the
resampling is seeded, so a report says the same thing each time it is made.

- `compare`: the gap between two cells with its interval; paired on their shared units, or,
  when they share none (other prompts or seeds), an unpaired bootstrap that says so.
- `p_best`: for each cell, the share of resamples (one resampling applied to all cells) in
  which it has the highest objective.
- `seeds_to_separate`: how many seeds per prompt would make a gap's interval exclude 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from dreamsweep.metrics.aggregate import as_array, cell_scores
from dreamsweep.metrics.objective import objective

RESAMPLES = 2000
LEVEL = 0.95
SEED = 0  # the resampling is fixed: the same data, the same verdict
P_BEST_SET = 0.05  # cells at least this likely to be best form the set the data cannot separate
Z = 1.959964  # the normal quantile of a two-sided 95% interval

Unit = tuple[str, str, int]  # (kind: "prompt" | "class", prompt, seed)


@dataclass(frozen=True)
class CellSamples:
    """A cell's per-sample scores (its scores file's `samples`) and how its run scores a cell."""

    units: tuple[Unit, ...]
    scores: dict[str, np.ndarray]  # score -> value per unit (NaN: does not apply)
    objective_name: str = "balanced"
    drift_penalty: float = 0.5

    @classmethod
    def from_saved(
        cls, table: dict[str, Any] | None, objective_name: str, drift_penalty: float
    ) -> CellSamples | None:
        """From the scores file's `samples`; None for cells scored before samples were kept."""
        if not table or not table.get("scores"):
            return None
        units = tuple(zip(table["kind"], table["prompt"], table["seed"], strict=True))
        if len(set(units)) != len(units):
            return None  # the same unit twice: not a table this code wrote
        scores = {k: as_array(v) for k, v in table["scores"].items()}
        return cls(units, scores, objective_name, drift_penalty)

    @property
    def seeds_per_prompt(self) -> int:
        """The fewest seeds any prompt of the suite has."""
        prompts = _strata([u for u in self.units if u[0] == "prompt"])
        return min((len(ix) for ix in prompts), default=0)

    def objective(self, units: list[Unit], draws: np.ndarray | None = None) -> np.ndarray:
        """The objective on these units; with `draws` ([B, len(units)] indices), one value
        per resample."""
        position = {u: i for i, u in enumerate(self.units)}
        order = np.array([position[u] for u in units])
        taken = {k: v[order] for k, v in self.scores.items()}
        if draws is not None:
            taken = {k: v[draws] for k, v in taken.items()}
        prompts = [f"{kind}:{prompt}" for kind, prompt, _ in units]
        value = objective(cell_scores(taken, prompts), self.objective_name, self.drift_penalty)
        if value is None:
            return np.full(() if draws is None else len(draws), np.nan)
        return np.asarray(value, dtype=np.float64)


@dataclass(frozen=True)
class Gap:
    """Objective of a minus objective of b, with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    spread: float  # the bootstrap standard deviation of the gap
    paired: bool  # on shared units; False: the cells share no unit (other prompts or seeds)
    units: int  # shared units when paired, else the larger cell's

    @property
    def verdict(self) -> str:
        """How a compares with b: better, worse, or within noise (the interval holds 0)."""
        if self.low > 0:
            return "better"
        if self.high < 0:
            return "worse"
        return "within noise"


def _strata(units: list[Unit]) -> list[np.ndarray]:
    """Unit indices of each (kind, prompt): seeds are resampled within a prompt."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, (kind, prompt, _) in enumerate(units):
        groups.setdefault((kind, prompt), []).append(i)
    return [np.array(ix) for ix in groups.values()]


def draw(units: list[Unit], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """[resamples, len(units)] indices: each unit replaced by a random unit of its prompt."""
    out = np.empty((resamples, len(units)), dtype=np.int64)
    for ix in _strata(units):
        out[:, ix] = ix[rng.integers(0, len(ix), size=(resamples, len(ix)))]
    return out


def shared_units(cells: list[CellSamples]) -> list[Unit]:
    """The units every cell has, in the first cell's order."""
    common = set(cells[0].units).intersection(*(c.units for c in cells[1:]))
    return [u for u in cells[0].units if u in common]


def _interval(values: np.ndarray) -> tuple[float, float]:
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.nanpercentile(values, [tail, 100 - tail])
    return float(low), float(high)


def compare(a: CellSamples, b: CellSamples, resamples: int = RESAMPLES) -> Gap | None:
    """The gap a - b; None when either cell has no objective."""
    rng = np.random.default_rng(SEED)
    units = shared_units([a, b])
    if units:
        draws = draw(units, resamples, rng)
        gaps = a.objective(units, draws) - b.objective(units, draws)
        estimate = a.objective(units) - b.objective(units)
        paired, count = True, len(units)
    else:
        ua, ub = list(a.units), list(b.units)
        gaps = a.objective(ua, draw(ua, resamples, rng)) - b.objective(ub, draw(ub, resamples, rng))
        estimate = a.objective(ua) - b.objective(ub)
        paired, count = False, max(len(ua), len(ub))
    if np.isnan(estimate) or np.all(np.isnan(gaps)):
        return None
    low, high = _interval(gaps)
    return Gap(float(estimate), low, high, float(np.nanstd(gaps)), paired, count)


def interval(cell: CellSamples, resamples: int = RESAMPLES) -> tuple[float, float] | None:
    """The 95% interval of one cell's objective (seeds resampled within prompts)."""
    units = list(cell.units)
    values = cell.objective(units, draw(units, resamples, np.random.default_rng(SEED)))
    return None if np.all(np.isnan(values)) else _interval(values)


def score_intervals(
    cell: CellSamples, resamples: int = RESAMPLES
) -> dict[str, tuple[float, float]]:
    """The 95% interval of each of a cell's scores (the curves' error bars)."""
    units = list(cell.units)
    draws = draw(units, resamples, np.random.default_rng(SEED))
    prompts = [f"{kind}:{prompt}" for kind, prompt, _ in units]
    resampled = cell_scores({k: v[draws] for k, v in cell.scores.items()}, prompts)
    return {k: _interval(v) for k, v in resampled.items() if not np.all(np.isnan(v))}


def p_best(cells: list[CellSamples], resamples: int = RESAMPLES) -> list[float] | None:
    """For each cell, the share of resamples in which its objective is the highest, all cells
    resampled together on the units they share. Cells come in the report's order (best
    first): a tie goes to the earlier cell, as the tie rule does. None without shared units."""
    units = shared_units(cells) if cells else []
    if not units:
        return None
    draws = draw(units, resamples, np.random.default_rng(SEED))
    values = np.stack([c.objective(units, draws) for c in cells])
    winners = np.argmax(np.nan_to_num(values, nan=-np.inf), axis=0)
    return (np.bincount(winners, minlength=len(cells)) / resamples).tolist()


def seeds_to_separate(gap: Gap, seeds_per_prompt: int) -> int | None:
    """Seeds per prompt at which this gap's 95% interval would exclude 0 (the spread shrinks
    as 1/sqrt(seeds)); None when the gap is 0 or no spread was measured."""
    if gap.estimate == 0 or gap.spread == 0 or not math.isfinite(gap.spread):
        return None
    return max(seeds_per_prompt, math.ceil(seeds_per_prompt * (Z * gap.spread / gap.estimate) ** 2))
