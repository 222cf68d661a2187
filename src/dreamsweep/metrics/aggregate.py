"""From per-sample scores to a cell's scores: the one rule, for the scorer and the bootstrap.

A cell's samples are units (prompt, seed); the class-prompt samples are units of their own
prompt. Each per-sample score is an array over the units, NaN where it does not apply (a
subject score on a class sample, a prompt that asks for nothing, a sample without a face).
Arrays may carry leading axes (bootstrap resamples): the rule works on the last axis.

- Scores of the prompt suite (`prompt_mean_keys`) are the mean over prompts of each prompt's mean,
  so every prompt weighs the same whatever its number of seeds.
- Every other score is the mean over the samples it applies to (face identity over the samples
  with a face, prior drift over the class samples).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from dreamsweep.metrics.registry import registered_scores


def prompt_mean_keys() -> set[str]:
    """The scores made as a mean of prompt means (Score.per_prompt in metrics/registry.py)."""
    return {key for key, score in registered_scores().items() if score.per_prompt}


def as_array(values: Sequence[float | None]) -> np.ndarray:
    """A JSON list (None for "does not apply") as a float64 array with NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=np.float64)


def _nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices are NaN, as meant
        return np.nanmean(x, axis=axis)


def prompt_groups(prompts: Sequence[str]) -> list[np.ndarray]:
    """The unit indices of each prompt, in first-seen order."""
    order: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        order.setdefault(p, []).append(i)
    return [np.array(ix) for ix in order.values()]


def prompt_means(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Each prompt's mean (last axis: one per group); NaN for a prompt it does not apply to."""
    return np.stack([_nanmean(values[..., ix]) for ix in groups], axis=-1)


def cell_value(key: str, values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """One score of a cell from its per-unit values (last axis); NaN when nothing applies."""
    if key not in prompt_mean_keys():
        return _nanmean(values)
    return _nanmean(prompt_means(values, groups))


def summarise(
    per_sample: dict[str, list[float | None]], unit_prompt: list[str], samples: int
) -> tuple[dict[str, float | None], dict[str, list[float | None]]]:
    """(the cell's scores, each prompt-suite score per prompt) from per-sample values; the
    first `samples` units are the prompt suite's, the rest the class prompt's."""
    arrays = {k: as_array(v) for k, v in per_sample.items()}
    scores = {k: as_float(v) for k, v in cell_scores(arrays, unit_prompt).items()}
    groups = prompt_groups(unit_prompt[:samples])
    per_prompt = {
        k: [as_float(v) for v in prompt_means(arrays[k][:samples], groups)]
        for k in registered_scores()
        if k in prompt_mean_keys() and k in arrays and not np.all(np.isnan(arrays[k][:samples]))
    }
    return scores, per_prompt


def cell_scores(per_unit: dict[str, np.ndarray], prompts: Sequence[str]) -> dict[str, np.ndarray]:
    """Every per-sample score turned into the cell's; keys whose value is all NaN are left
    out (the score does not apply to this cell), as a cell without that score."""
    groups = prompt_groups(prompts)
    out = {}
    for key, values in per_unit.items():
        value = cell_value(key, values, groups)
        if not np.all(np.isnan(value)):
            out[key] = value
    return out


def as_float(value: np.ndarray | float | None) -> float | None:
    """A 0-d result as a plain float (None for NaN), for JSON and logs."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else value
