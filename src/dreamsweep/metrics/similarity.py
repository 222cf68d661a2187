"""Cosine similarities of unit-normalised embeddings: the arithmetic every scorer shares."""

from __future__ import annotations

import torch

from dreamsweep.metrics.registry import CellImages, Scored


def cross_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[len(a), len(b)] cosines of unit vectors."""
    return a @ b.T


def mean_cross_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over all (a_i, b_j) pairs: the DreamBooth paper's CLIP-I / DINO averaging."""
    return cross_cosine(a, b).mean().item()


def mean_pairwise_distance(x: torch.Tensor) -> float | None:
    """Mean (1 - cosine) over distinct pairs of rows; None with fewer than two rows."""
    n = x.shape[0]
    if n < 2:
        return None
    sims = cross_cosine(x, x)
    off_diagonal = sims[~torch.eye(n, dtype=torch.bool)]
    return (1 - off_diagonal).mean().item()


def score_dino(cell: CellImages) -> Scored:
    """DINO: per sample, its mean DINO cosine with every instance image (the CLIP-I rule in
    DINO ViT space, which separates subjects better)."""
    emb = cell.embeddings("dino")
    return Scored({"dino": cross_cosine(emb, cell.features["dino"].reference).mean(dim=1)})
