"""Exponential moving average of the UNet weights (diffusers EMAModel, with warm-up)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel

from dreamsweep.config import EmaConfig


def build_ema(cfg: EmaConfig, unet: UNet2DConditionModel) -> EMAModel:
    """EMA with decay min(decay, 1 - (1 + step/inv_gamma)^-power) when warm-up is on."""
    return EMAModel(
        unet.parameters(),
        decay=cfg.decay,
        min_decay=cfg.min_decay,
        update_after_step=cfg.update_after_step,
        use_ema_warmup=cfg.warmup,
        inv_gamma=cfg.inv_gamma,
        power=cfg.power,
    )


@contextmanager
def ema_weights(ema: EMAModel, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Temporarily put the EMA weights into ``model`` (for sampling or export)."""
    ema.store(model.parameters())
    ema.copy_to(model.parameters())
    try:
        yield model
    finally:
        ema.restore(model.parameters())
