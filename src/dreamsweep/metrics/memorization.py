"""Memorization: does a sample copy one of the training images?"""

from __future__ import annotations

import torch

from dreamsweep.metrics.registry import CellImages, Scored
from dreamsweep.metrics.similarity import cross_cosine


def nearest_cosine(samples: torch.Tensor, references: torch.Tensor) -> torch.Tensor:
    """[N] per sample, the cosine to the nearest training image (the cell's `memorization` is
    their mean, `memorization_max` their max)."""
    return cross_cosine(samples, references).max(dim=1).values


def score_memorization(cell: CellImages) -> Scored:
    """Per sample, the DINO cosine to its nearest training image; the cell's max beside it."""
    nearest = nearest_cosine(cell.embeddings("dino"), cell.features["dino"].reference)
    return Scored({"memorization": nearest}, cell={"memorization_max": nearest.max().item()})
