"""CLIP-I (subject fidelity) and CLIP-T (prompt fidelity), Ruiz et al. 2022, sec. 4.1."""

from __future__ import annotations

import torch

from dreamsweep.metrics.similarity import mean_cross_cosine


def clip_i(samples: torch.Tensor, references: torch.Tensor) -> float:
    """Mean cosine of CLIP image embeddings over all (sample, instance image) pairs."""
    return mean_cross_cosine(samples, references)


def clip_t(samples: torch.Tensor, prompts: torch.Tensor) -> float:
    """Mean cosine of each sample with its own prompt's text embedding (raw, about 0.30)."""
    return (samples * prompts).sum(dim=-1).mean().item()
