"""Prior drift: has the class ("a photo of a dog") been overwritten by the subject?

`prior_drift` compares the tuned model's class-prompt samples with the base model's samples for
the same seeds (1 - cosine of each matched pair; 0 = the class prior is intact; the cell's value
is their mean). `pres`, the paper's PRES (Ruiz et al. 2022, sec. 4.3), is the mean DINO cosine of
class-prompt samples with the real subject images (lower = better prior kept): per class sample
its mean cosine with the references (metrics/scoring.py).
"""

from __future__ import annotations

import torch

from dreamsweep.metrics.registry import CellImages, Scored
from dreamsweep.metrics.similarity import cross_cosine


def prior_drift_per_sample(tuned: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """[N] 1 - cosine of each (tuned, base) class sample pair made from the same seed."""
    if tuned.shape != base.shape:
        raise ValueError(f"need matched samples, got {tuple(tuned.shape)} vs {tuple(base.shape)}")
    return 1.0 - (tuned * base).sum(dim=-1)


def score_prior_drift(cell: CellImages) -> Scored:
    """Per class sample: `pres` and, when the base model's class samples are at hand,
    `prior_drift` (none without class samples)."""
    if not cell.class_samples:
        return Scored()
    emb = cell.embeddings("dino", of_class=True)
    per_class = {"pres": cross_cosine(emb, cell.features["dino"].reference).mean(dim=1)}
    if cell.base_class_dino is not None:
        per_class["prior_drift"] = prior_drift_per_sample(emb, cell.base_class_dino)
    return Scored(class_samples=per_class)
