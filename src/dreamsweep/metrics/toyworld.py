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

from dreamsweep.metrics.registry import CellImages, Scored
from dreamsweep.toyworld.oracle import Oracle, OracleScores, reference_embedding, score_images
from dreamsweep.toyworld.world import BACKGROUNDS, COLOURS

__all__ = ["reference_embedding", "requested", "toyworld_per_sample"]

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


def toyworld_per_sample(
    oracle: Oracle,
    reference: torch.Tensor,
    samples: list[Image.Image],
    sample_prompt: list[int],
    texts: list[str],
    class_samples: list[Image.Image],
) -> tuple[dict[str, list], dict[str, list], dict[str, float]]:
    """What the oracle sees, sample by sample: (per prompt-suite sample, per class sample,
    cell-level scores that are no mean of per-sample values).

    Samples: `subject_rate` 1/0, `subject_sim` (cosine with the instance images' mean
    embedding), `prompt_fidelity` 1/0 (None when its prompt asks for nothing), `damage` 1/0.
    Class samples: `prior_drift` 1/0 (became the subject), `damage`. Cell level:
    `class_diversity`, distinct shape x colour pairs among the class samples."""
    seen = score_images(oracle, samples)
    asks = [requested(texts[p]) for p in sample_prompt]
    per_sample: dict[str, list] = {
        "subject_rate": seen.is_subject.float().tolist(),
        "subject_sim": (seen.embedding @ reference).tolist(),
        "prompt_fidelity": [follows(seen, i, a) if a else None for i, a in enumerate(asks)],
        "damage": (seen.confidence < UNSURE).float().tolist(),
    }
    if not class_samples:
        return per_sample, {}, {}
    class_seen = score_images(oracle, class_samples)
    per_class = {
        "prior_drift": class_seen.is_subject.float().tolist(),
        "damage": (class_seen.confidence < UNSURE).float().tolist(),
    }
    kept = [
        (s, c) for s, c in zip(class_seen.shape, class_seen.colour, strict=True) if s != "subject"
    ]
    return per_sample, per_class, {"class_diversity": float(len(set(kept)))}


def score_toyworld(cell: CellImages) -> Scored:
    """What the toy world's oracle sees in a cell (toyworld_per_sample)."""
    oracle = cell.features["oracle"]
    seen, seen_class, cell_level = toyworld_per_sample(
        oracle.model, oracle.reference, cell.samples, cell.sample_prompt, cell.texts,
        cell.class_samples,
    )  # fmt: skip
    return Scored(seen, seen_class, cell_level)
