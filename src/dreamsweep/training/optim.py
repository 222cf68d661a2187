"""Optimiser and learning-rate schedule from `optim.*` and `train.text_encoder_lr`."""

from __future__ import annotations

import torch
from diffusers.optimization import get_scheduler

from dreamsweep.choices import OPTIMIZERS
from dreamsweep.config import RunConfig
from dreamsweep.registry import load, pick
from dreamsweep.training.ema import trained_parameters

FUSED_ADAMW_DEVICES = ("cpu", "cuda")  # torch's fused AdamW kernels; foreach elsewhere


def param_groups(
    cfg: RunConfig, unet: torch.nn.Module, text_encoder: torch.nn.Module | None
) -> list[dict]:
    """The UNet at optim.lr; the text encoder (when trained) at its own LR."""
    groups = [{"params": trained_parameters(unet), "lr": cfg.optim.lr}]
    if text_encoder is not None:
        te_lr = cfg.train.text_encoder_lr or cfg.optim.lr
        groups.append({"params": trained_parameters(text_encoder), "lr": te_lr})
    return groups


def adamw_kernel(device: torch.device) -> dict[str, bool]:
    """One fused kernel for every parameter where torch has one, else the foreach kernels:
    AdamW's default on CPU is a Python loop over the parameters, slower than the update."""
    return {"fused": True} if device.type in FUSED_ADAMW_DEVICES else {"foreach": True}


def torch_adamw(o, groups: list[dict], kwargs: dict) -> torch.optim.Optimizer:
    """optim.name=adamw: torch's AdamW, fused where torch has the kernel."""
    device = groups[0]["params"][0].device
    return torch.optim.AdamW(groups, **kwargs, **adamw_kernel(device))


def bitsandbytes_adamw8bit(o, groups: list[dict], kwargs: dict) -> torch.optim.Optimizer:
    """optim.name=adamw8bit: bitsandbytes' 8-bit AdamW (CUDA; checked by validate_machine)."""
    import bitsandbytes as bnb

    return bnb.optim.AdamW8bit(groups, **kwargs)


def build_optimizer(cfg: RunConfig, groups: list[dict]) -> torch.optim.Optimizer:
    """The optimizer `optim.name` names (dreamsweep/choices.py: OPTIMIZERS)."""
    o = cfg.optim
    kwargs = dict(betas=(o.beta1, o.beta2), weight_decay=o.weight_decay, eps=o.eps)
    return load(pick(OPTIMIZERS, o.name, "optim.name").build)(o, groups, kwargs)


def build_lr_schedule(cfg: RunConfig, optimizer: torch.optim.Optimizer, num_processes: int):
    """diffusers' get_scheduler; Accelerate steps a prepared scheduler once per process."""
    return get_scheduler(
        cfg.optim.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=cfg.optim.warmup_steps * num_processes,
        num_training_steps=cfg.train.max_steps * num_processes,
    )
