"""CLIP-T (prompt fidelity), Ruiz et al. 2022, sec. 4.1. (CLIP-I and DINO, subject fidelity,
are `similarity.mean_cross_cosine` of sample and instance-image embeddings: metrics/scoring.py.)"""

from __future__ import annotations

import torch


def clip_t(samples: torch.Tensor, prompts: torch.Tensor) -> float:
    """Mean cosine of each sample with its own prompt's text embedding (raw, about 0.30)."""
    return (samples * prompts).sum(dim=-1).mean().item()
