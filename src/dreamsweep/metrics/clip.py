"""CLIP-I (subject fidelity) and CLIP-T (prompt fidelity), Ruiz et al. 2022, sec. 4.1. (DINO,
the mean cosine of each sample with every instance image in DINO space: similarity.py.)"""

from __future__ import annotations

import torch

from dreamsweep.metrics.registry import CellImages, Scored
from dreamsweep.metrics.similarity import cross_cosine


def clip_t_per_sample(samples: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """[N] cosine of each sample with its own prompt's text embedding (raw, about 0.30)."""
    return (samples * prompts).sum(dim=-1)


def score_clip_i(cell: CellImages) -> Scored:
    """CLIP-I: per sample, its mean CLIP cosine with every instance image (Ruiz et al. 2022,
    sec. 4.1: the mean over all pairs)."""
    emb = cell.embeddings("clip")
    return Scored({"clip_i": cross_cosine(emb, cell.features["clip"].reference).mean(dim=1)})


def score_clip_t(cell: CellImages) -> Scored:
    """CLIP-T: per sample, its CLIP cosine with its own prompt (the token removed)."""
    clip = cell.features["clip"].model
    prompts = clip.texts(cell.texts)[cell.sample_prompt]
    return Scored({"clip_t": clip_t_per_sample(cell.embeddings("clip"), prompts)})
