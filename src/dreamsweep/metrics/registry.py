"""The scorers, by the name `metrics.scorers` lists: the one table that config_checks.py checks
names against, that scoring.py builds and runs from, and that the report, cells.csv and the
W&B tables read the scores' keys, labels and directions from.

Adding a scorer is one module with its score function and one entry here. Imports neither
torch nor diffusers: score functions are named "module:function" and imported when a cell is
scored (dreamsweep/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Score:
    """One number a scorer writes: `key` in scores.json, metrics.jsonl (eval/<key>), W&B and
    cells.csv; `label` on the report's curve; which way is better; how a cell's value is made
    from its samples' (per_prompt: the mean of each prompt's mean, so every prompt weighs the
    same; else the mean over the samples it applies to; metrics/aggregate.py)."""

    key: str
    label: str
    higher_is_better: bool
    per_prompt: bool = False


@dataclass(frozen=True)
class ScorerSpec:
    """`score` ("module:function") takes a cell's samples (scoring.CellImages) and returns
    its per-sample values (scoring.Scored); `features` are the feature models it embeds
    with (scoring.FEATURES); `base_class_samples`: it compares the class samples with the
    base model's of the same seeds (made once per run, evaluator.prepare_baselines)."""

    score: str
    features: tuple[str, ...]
    scores: tuple[Score, ...]
    base_class_samples: bool = False


# In the order the report shows the scores.
SCORERS: dict[str, ScorerSpec] = {
    "toyworld": ScorerSpec(
        "dreamsweep.metrics.toyworld:score_toyworld",
        ("oracle",),
        (
            Score(
                "subject_rate",
                "subject rate (toy-world oracle: samples recognised as the subject)",
                True,
                per_prompt=True,
            ),
            Score("subject_sim", "subject similarity (oracle embedding)", True, per_prompt=True),
            Score(
                "prompt_fidelity",
                "prompt fidelity (requested background produced)",
                True,
                per_prompt=True,
            ),
            Score("prior_drift", "prior drift", False),
            Score("class_diversity", "class diversity (distinct shape x colour)", True),
            Score("damage", "damaged samples (oracle unsure)", False),
        ),
    ),
    "dino": ScorerSpec(
        "dreamsweep.metrics.similarity:score_dino",
        ("dino",),
        (Score("dino", "DINO (subject fidelity)", True, per_prompt=True),),
    ),
    "clip_i": ScorerSpec(
        "dreamsweep.metrics.clip:score_clip_i",
        ("clip",),
        (Score("clip_i", "CLIP-I (subject fidelity)", True, per_prompt=True),),
    ),
    "clip_t": ScorerSpec(
        "dreamsweep.metrics.clip:score_clip_t",
        ("clip",),
        (Score("clip_t", "CLIP-T (prompt fidelity)", True, per_prompt=True),),
    ),
    "identity": ScorerSpec(
        "dreamsweep.metrics.identity:score_identity",
        ("faces",),
        (
            Score("identity", "face identity", True),
            Score("face_detection_rate", "face detection rate", True),
            Score("identity_same_person_rate", "same person (dlib's distance rule)", True),
        ),
    ),
    "diversity": ScorerSpec(
        "dreamsweep.metrics.diversity:score_diversity",
        ("dino",),
        (Score("diversity", "diversity", True),),
    ),
    "prior_drift": ScorerSpec(
        "dreamsweep.metrics.drift:score_prior_drift",
        ("dino",),
        (Score("prior_drift", "prior drift", False), Score("pres", "PRES", False)),
        base_class_samples=True,
    ),
    "memorization": ScorerSpec(
        "dreamsweep.metrics.memorization:score_memorization",
        ("dino",),
        (
            Score("memorization", "memorization (mean)", False),
            Score("memorization_max", "memorization (max)", False),
        ),
    ),
}


def registered_scores() -> dict[str, Score]:
    """Every score key the scorers write, in the table's order (a key two scorers share,
    such as prior_drift, once: its first entry)."""
    out: dict[str, Score] = {}
    for scorer in SCORERS.values():
        for score in scorer.scores:
            out.setdefault(score.key, score)
    return out
