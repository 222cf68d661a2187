"""Diversity: how different the samples of one prompt are (low = collapsed, overfit)."""

from __future__ import annotations

import torch

from dreamsweep.metrics.registry import CellImages, Scored
from dreamsweep.metrics.similarity import mean_pairwise_distance


def diversity(samples_by_prompt: list[torch.Tensor]) -> float | None:
    """Mean over prompts of the mean pairwise (1 - cosine) among that prompt's samples."""
    values = [d for x in samples_by_prompt if (d := mean_pairwise_distance(x)) is not None]
    return sum(values) / len(values) if values else None


def score_diversity(cell: CellImages) -> Scored:
    """The cell's diversity in DINO space (a cell-level score: no per-sample value)."""
    emb = cell.embeddings("dino")
    rows = [
        [i for i, q in enumerate(cell.sample_prompt) if q == p]
        for p in sorted(set(cell.sample_prompt))
    ]
    return Scored(cell={"diversity": diversity([emb[r] for r in rows])})
