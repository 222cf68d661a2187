"""Prior drift: has the class ("a photo of a dog") been overwritten by the subject?

`prior_drift` compares the tuned model's class-prompt samples with the base model's samples for
the same seeds (1 - mean cosine of the matched pairs; 0 = the class prior is intact). `pres` is
the paper's PRES: mean DINO cosine of class-prompt samples with the real subject images (lower
= better prior kept).
"""

from __future__ import annotations

import torch

from dreamsweep.metrics.similarity import mean_cross_cosine


def prior_drift(tuned: torch.Tensor, base: torch.Tensor) -> float:
    """1 - mean cosine of (tuned, base) class samples made from the same seeds."""
    if tuned.shape != base.shape:
        raise ValueError(f"need matched samples, got {tuple(tuned.shape)} vs {tuple(base.shape)}")
    return 1.0 - (tuned * base).sum(dim=-1).mean().item()


def pres(class_samples: torch.Tensor, references: torch.Tensor) -> float:
    """Ruiz et al. 2022, sec. 4.3: subject similarity of the class-prompt samples."""
    return mean_cross_cosine(class_samples, references)
