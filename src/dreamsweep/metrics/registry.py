"""The scorers, by the name `metrics.scorers` lists: the one table that config_checks.py checks
names against, that scoring.py builds and runs from, and that the report, cells.csv and the
W&B tables read the scores' keys, labels and directions from.

Adding a scorer is one module with its score function (CellImages in, Scored out) and one
entry here. Imports neither torch nor diffusers: score functions are named "module:function"
and imported when a cell is scored (dreamsweep/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from PIL import Image


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


@dataclass
class Feature:
    """A loaded feature model with what it made of the instance images (the references)."""

    model: object  # e.g. features.ClipFeatures: .images(list of images) -> embeddings
    reference: object  # the instance images as this model sees them
    description: object  # recorded with every score (scores.json's metric_models)


@dataclass
class CellImages:
    """What a score function gets: one cell's samples (samples[i] made from the prompt
    sample_prompt[i]; texts[p] that prompt for CLIP-T), its class-prompt samples, the base
    model's class samples in DINO space (or None), and the run's feature models. Embeddings
    are computed once per cell and feature model, whichever scorers ask."""

    samples: list[Image.Image]
    sample_prompt: list[int]
    texts: list[str]
    class_samples: list[Image.Image]
    base_class_dino: torch.Tensor | None
    features: dict[str, Feature]
    _embedded: dict[tuple[str, bool], torch.Tensor] = field(default_factory=dict, repr=False)

    def embeddings(self, feature: str, of_class: bool = False) -> torch.Tensor:
        """The samples (or class samples) embedded by a feature model, once."""
        key = (feature, of_class)
        if key not in self._embedded:
            images = self.class_samples if of_class else self.samples
            self._embedded[key] = self.features[feature].model.images(images)
        return self._embedded[key]


@dataclass
class Scored:
    """A score function's result: per key, one value per sample (None where it does not
    apply), one per class sample, and cell-level values that are no mean of samples'."""

    samples: dict[str, list | torch.Tensor] = field(default_factory=dict)
    class_samples: dict[str, list | torch.Tensor] = field(default_factory=dict)
    cell: dict[str, float | None] = field(default_factory=dict)


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
