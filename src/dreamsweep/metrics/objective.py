"""The run's objective from a cell's scores, and the best cell of a run.

`balanced` (default): geometric mean of subject fidelity (the toy world's subject rate, else
DINO, else CLIP-I, or face identity with `objective=identity`) and prompt fidelity (the toy
world's requested background produced, else CLIP-T), minus `drift_penalty` x prior drift.
A geometric mean rewards cells that are good at both, which is the overfitting trade-off.

Face identity counts a sample without a face as a failure: the identity term is the face
detection rate x the mean identity cosine of the samples that have a face, so 1 face in 8
samples at 0.95 (0.12) no longer beats 8 of 8 at 0.90 (0.90).
"""

from __future__ import annotations

from typing import Any

import numpy as np

OBJECTIVES = ("balanced", "subject", "prompt", "identity")


SUBJECT_KEYS = ("subject_rate", "dino", "clip_i")  # the toy world's oracle, else DINO, CLIP-I
PROMPT_KEYS = ("prompt_fidelity", "clip_t")


def _first(scores: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    return next((scores[k] for k in keys if scores.get(k) is not None), None)


def subject_fidelity(scores: dict[str, Any]) -> float | None:
    return _first(scores, SUBJECT_KEYS)


def prompt_fidelity(scores: dict[str, Any]) -> float | None:
    return _first(scores, PROMPT_KEYS)


def face_identity(scores: dict[str, Any]) -> Any:
    """Detection rate x identity cosine; no face in any sample is 0, not a missing score."""
    rate, identity = scores.get("face_detection_rate"), scores.get("identity")
    if rate is None:
        return identity
    if identity is None:
        return 0.0 * rate
    return np.where(np.isnan(identity), 0.0, rate * np.nan_to_num(identity))


def objective(scores: dict[str, Any], name: str = "balanced", drift_penalty: float = 0.5) -> Any:
    """The objective of a cell's scores: floats in, a float out; arrays (bootstrap resamples
    of the scores, `verdicts.py`) in, an array out: one formula for both."""
    subject, prompt = subject_fidelity(scores), prompt_fidelity(scores)
    if name == "identity":
        subject = face_identity(scores)
    if name in ("subject", "prompt"):
        value = subject if name == "subject" else prompt
    elif subject is None or prompt is None:
        return None
    else:
        value = np.sqrt(np.maximum(subject, 0.0) * np.maximum(prompt, 0.0))
        if scores.get("prior_drift") is not None:
            value = value - drift_penalty * scores["prior_drift"]
    if value is None or np.ndim(value) > 0:
        return value
    return None if np.isnan(value) else float(value)


SUBJECT_WORDS = "subject fidelity (the toy world's subject rate, else DINO, else CLIP-I)"
PROMPT_WORDS = "prompt fidelity (the toy world's requested background produced, else CLIP-T)"


def describe(name: str = "balanced", drift_penalty: float = 0.5) -> str:
    """The objective in words, for reports."""
    if name == "subject":
        return SUBJECT_WORDS
    if name == "prompt":
        return PROMPT_WORDS
    subject = (
        "face identity (detection rate x identity cosine)" if name == "identity" else SUBJECT_WORDS
    )
    return (
        f"the geometric mean of {subject} and {PROMPT_WORDS}, minus "
        f"{drift_penalty:g} x prior drift: high only when a cell looks like the subject and "
        "follows the prompt"
    )


def rank_key(objective: float, step: int, run_order: int, cell: str) -> tuple:
    """The one order of cells, best first, used by the run (best/), the report and export:
    the highest objective; on a tie the earlier step (cheaper to train), then the earlier run
    of a sweep, then the cell name (so `ddim-...-ema` before `ddim-...-raw`)."""
    return (-objective, step, run_order, cell)


def best_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The best trained cell (step 0 is the baseline) by `rank_key`; records may carry
    `run_order` (their run's place in a sweep)."""
    scored = [c for c in cells if c.get("objective") is not None and c["step"] > 0]
    if not scored:
        return None
    return min(
        scored,
        key=lambda c: rank_key(c["objective"], c["step"], c.get("run_order", 0), c.get("cell", "")),
    )
