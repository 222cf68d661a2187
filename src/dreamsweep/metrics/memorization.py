"""Memorization: does a sample copy one of the training images?"""

from __future__ import annotations

import torch

from dreamsweep.metrics.similarity import cross_cosine


def memorization(samples: torch.Tensor, references: torch.Tensor) -> dict[str, float]:
    """Per sample, the cosine to the nearest training image; their mean and max."""
    nearest = cross_cosine(samples, references).max(dim=1).values
    return {"memorization": nearest.mean().item(), "memorization_max": nearest.max().item()}
