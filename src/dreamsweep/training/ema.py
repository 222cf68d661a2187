"""Exponential moving average of the UNet weights (diffusers EMAModel, with warm-up)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file

from dreamsweep.config import EmaConfig
from dreamsweep.tensor_files import save_tensors


def trained_parameters(module: torch.nn.Module) -> list[torch.nn.Parameter]:
    """What the optimiser and the EMA see: every parameter of a fine-tuned module, only the
    adapters of a LoRA one (the frozen base has requires_grad off)."""
    return [p for p in module.parameters() if p.requires_grad]


def build_ema(cfg: EmaConfig, unet: UNet2DConditionModel) -> EMAModel:
    """EMA with decay min(decay, 1 - (1 + step/inv_gamma)^-power) when warm-up is on, of the
    UNet's trained parameters (the adapters under LoRA: an EMA of the LoRA weights). foreach:
    one kernel per update for all parameters, not a Python loop over them at every step."""
    return EMAModel(
        trained_parameters(unet),
        decay=cfg.decay,
        min_decay=cfg.min_decay,
        update_after_step=cfg.update_after_step,
        use_ema_warmup=cfg.warmup,
        inv_gamma=cfg.inv_gamma,
        power=cfg.power,
        foreach=True,
    )


@torch.no_grad()
def ema_update(ema: EMAModel, params: list[torch.nn.Parameter]) -> None:
    """EMAModel.step for trained parameters (all require grad), as one in-place lerp:
    shadow - (1 - decay) * (shadow - param) without the temporaries of diffusers' foreach
    path or the per-tensor loop."""
    ema.optimization_step += 1
    decay = ema.get_decay(ema.optimization_step)
    ema.cur_decay_value = decay
    torch._foreach_lerp_(ema.shadow_params, params, 1 - decay)


EMA_TENSORS, EMA_SETTINGS = "ema.safetensors", "ema.json"


def save_ema(ema: EMAModel, folder: Path) -> None:
    """The EMA's state as tensors (safetensors) and numbers (JSON): never a pickle, so a
    checkpoint folder holds no code that a resume would run."""
    state = ema.state_dict()
    shadow = state.pop("shadow_params")
    save_tensors(
        {f"shadow.{i:05d}": t.detach().contiguous().cpu() for i, t in enumerate(shadow)},
        folder / EMA_TENSORS,
    )
    (folder / EMA_SETTINGS).write_text(json.dumps(state, sort_keys=True))


def load_ema(ema: EMAModel, folder: Path) -> None:
    tensors = load_file(str(folder / EMA_TENSORS))
    state = json.loads((folder / EMA_SETTINGS).read_text())
    state["shadow_params"] = [tensors[k] for k in sorted(tensors)]
    ema.load_state_dict(state)


@contextmanager
def ema_weights(
    ema: EMAModel, model: torch.nn.Module, params: list[torch.nn.Parameter] | None = None
) -> Iterator[torch.nn.Module]:
    """Temporarily put the EMA weights into ``model`` (for sampling or export); ``params``:
    the parameters it averages, when they are not those that require grad now (pivotal
    tuning's first phase trains none of the UNet's)."""
    params = params if params is not None else trained_parameters(model)
    ema.store(params)
    ema.copy_to(params)
    try:
        yield model
    finally:
        ema.restore(params)
