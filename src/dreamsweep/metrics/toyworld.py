"""Toy-world scores: what the oracle sees in a cell's samples, as exact rates instead of the
CLIP/DINO estimates real models need (the oracle: dreamsweep/toyworld/oracle.py).

Names fit the real scores where they mean the same: `subject_rate` and `subject_sim` are the
subject fidelity (DINO/CLIP-I), `prompt_fidelity` is CLIP-T's question asked exactly (did the
requested background/colour appear?), `prior_drift` is the share of class-prompt samples that
became the subject (0 = the class prior is intact). `class_diversity` counts the distinct
shape x colour pairs among the class samples (the base model draws 23 of 25 in 64 samples, 14
in 16; a drifted class collapses to a few) and `damage` is the share of samples the oracle cannot
classify (confidence below 0.5 on some head: colour casts, noise, broken shapes).
"""

from __future__ import annotations

import re

import torch
from PIL import Image

from dreamsweep.toyworld.oracle import Oracle, OracleScores, reference_embedding, score_images
from dreamsweep.toyworld.world import BACKGROUNDS, COLOURS

__all__ = ["reference_embedding", "requested", "toyworld_scores"]

UNSURE = 0.5  # below this top-class probability on some head, a sample counts as damaged


def requested(prompt: str) -> dict[str, str]:
    """The background and colour a prompt asks for ("... on a light blue background")."""
    asked = {}
    match = re.search(r"on an? ([a-z ]+?) background", prompt)
    if match and match.group(1) in BACKGROUNDS:
        asked["background"] = match.group(1)
    head = prompt.split(" on ")[0].split()
    colours = [word for word in head if word in COLOURS]
    if colours:
        asked["colour"] = colours[0]
    return asked


def follows(seen: OracleScores, i: int, asked: dict[str, str]) -> float:
    """1 if sample i shows everything its prompt asked for, else 0."""
    got = {"background": seen.background[i], "colour": seen.colour[i]}
    return float(all(got[k] == v for k, v in asked.items()))


def per_prompt_scores(
    seen: OracleScores, reference: torch.Tensor, sample_prompt: list[int], texts: list[str]
) -> tuple[dict[str, list[float]], float | None]:
    """subject_rate and subject_sim for each prompt (index into texts), prompt_fidelity per
    prompt when every prompt asks for something; else (the second value) its mean over the
    prompts that ask, so the per-prompt lists stay aligned prompt by prompt."""
    groups = sorted(set(sample_prompt))
    rows = {p: [i for i, q in enumerate(sample_prompt) if q == p] for p in groups}
    similarity = seen.embedding @ reference
    subject = seen.is_subject.float()
    out: dict[str, list[float]] = {
        "subject_rate": [subject[rows[p]].mean().item() for p in groups],
        "subject_sim": [similarity[rows[p]].mean().item() for p in groups],
    }
    asks = {p: requested(texts[p]) for p in groups}
    fidelity = [
        sum(follows(seen, i, asks[p]) for i in rows[p]) / len(rows[p]) for p in groups if asks[p]
    ]
    if fidelity and len(fidelity) == len(groups):
        out["prompt_fidelity"] = fidelity
        return out, None
    return out, (sum(fidelity) / len(fidelity) if fidelity else None)


def class_scores(seen: OracleScores) -> dict[str, float]:
    """prior_drift and class_diversity of the class-prompt samples."""
    kept = [(s, c) for s, c in zip(seen.shape, seen.colour, strict=True) if s != "subject"]
    return {
        "prior_drift": seen.is_subject.float().mean().item(),
        "class_diversity": float(len(set(kept))),
    }


def toyworld_scores(
    oracle: Oracle,
    reference: torch.Tensor,
    samples: list[Image.Image],
    sample_prompt: list[int],
    texts: list[str],
    class_samples: list[Image.Image],
) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(run-level scores, per-prompt scores) of one cell; the means of the per-prompt lists
    are the cell's subject_rate, subject_sim and prompt_fidelity."""
    seen = score_images(oracle, samples)
    per_prompt, fidelity = per_prompt_scores(seen, reference, sample_prompt, texts)
    confidence = seen.confidence
    scores: dict[str, float] = {} if fidelity is None else {"prompt_fidelity": fidelity}
    if class_samples:
        class_seen = score_images(oracle, class_samples)
        scores.update(class_scores(class_seen))
        confidence = torch.cat([confidence, class_seen.confidence])
    scores["damage"] = (confidence < UNSURE).float().mean().item()
    return scores, per_prompt
