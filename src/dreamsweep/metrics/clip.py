"""CLIP-T (prompt fidelity), Ruiz et al. 2022, sec. 4.1. (CLIP-I and DINO, subject fidelity,
are the mean cosine of each sample with every instance image: metrics/scoring.py.)"""

from __future__ import annotations

import torch


def clip_t_per_sample(samples: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """[N] cosine of each sample with its own prompt's text embedding (raw, about 0.30)."""
    return (samples * prompts).sum(dim=-1)
