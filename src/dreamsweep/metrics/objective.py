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

import math
from typing import Any

OBJECTIVES = ("balanced", "subject", "prompt", "identity")


SUBJECT_KEYS = ("subject_rate", "dino", "clip_i")  # the toy world's oracle, else DINO, CLIP-I
PROMPT_KEYS = ("prompt_fidelity", "clip_t")


def _first(scores: dict[str, Any], keys: tuple[str, ...]) -> float | None:
    return next((scores[k] for k in keys if scores.get(k) is not None), None)


def subject_fidelity(scores: dict[str, Any]) -> float | None:
    return _first(scores, SUBJECT_KEYS)


def prompt_fidelity(scores: dict[str, Any]) -> float | None:
    return _first(scores, PROMPT_KEYS)


def face_identity(scores: dict[str, Any]) -> float | None:
    """Detection rate x identity cosine; no face in any sample is 0, not a missing score."""
    rate, identity = scores.get("face_detection_rate"), scores.get("identity")
    if rate is None:
        return identity
    return 0.0 if identity is None else rate * identity


def objective(
    scores: dict[str, Any], name: str = "balanced", drift_penalty: float = 0.5
) -> float | None:
    subject, prompt = subject_fidelity(scores), prompt_fidelity(scores)
    if name == "subject":
        return subject
    if name == "prompt":
        return prompt
    if name == "identity":
        subject = face_identity(scores)
    if subject is None or prompt is None:
        return None
    value = math.sqrt(max(subject, 0.0) * max(prompt, 0.0))
    if scores.get("prior_drift") is not None:
        value -= drift_penalty * scores["prior_drift"]
    return value


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


def best_cell(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cell with the highest objective among the trained steps (step 0 is the baseline)."""
    scored = [c for c in cells if c.get("objective") is not None and c["step"] > 0]
    return max(scored, key=lambda c: c["objective"]) if scored else None
