"""Prior drift: has the class ("a photo of a dog") been overwritten by the subject?

`prior_drift` compares the tuned model's class-prompt samples with the base model's samples for
the same seeds (1 - cosine of each matched pair; 0 = the class prior is intact; the cell's value
is their mean). `pres`, the paper's PRES (Ruiz et al. 2022, sec. 4.3), is the mean DINO cosine of
class-prompt samples with the real subject images (lower = better prior kept): per class sample
its mean cosine with the references (metrics/scoring.py).
"""

from __future__ import annotations

import torch


def prior_drift_per_sample(tuned: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """[N] 1 - cosine of each (tuned, base) class sample pair made from the same seed."""
    if tuned.shape != base.shape:
        raise ValueError(f"need matched samples, got {tuple(tuned.shape)} vs {tuple(base.shape)}")
    return 1.0 - (tuned * base).sum(dim=-1)
