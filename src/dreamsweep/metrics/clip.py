"""CLIP-T (prompt fidelity), Ruiz et al. 2022, sec. 4.1. (CLIP-I and DINO, subject fidelity,
are the mean cosine of each sample with every instance image: metrics/scoring.py.)

torchmetrics' `clip_score` is the same cosine, times 100, clamped at 0 and averaged over the
batch (it agrees with ours to 2e-8). It is not used: it gives no per-sample score outside a
private function, redoes the text features on every call, would need our preprocessing and
tokenizer wrapped as a processor, and on transformers 5 it fails on the output object
`get_image_features` returns.
"""

from __future__ import annotations

import torch


def clip_t_per_sample(samples: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """[N] cosine of each sample with its own prompt's text embedding (raw, about 0.30)."""
    return (samples * prompts).sum(dim=-1)
