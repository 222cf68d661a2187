"""DINO subject fidelity: like CLIP-I in DINO ViT space, which separates subjects better."""

from __future__ import annotations

import torch

from dreamsweep.metrics.similarity import mean_cross_cosine


def dino(samples: torch.Tensor, references: torch.Tensor) -> float:
    """Mean cosine of DINO CLS embeddings over all (sample, instance image) pairs."""
    return mean_cross_cosine(samples, references)
