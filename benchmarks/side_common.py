"""What every side.py kind shares: the run it measures, mixed precision, the fastest AdamW.

In a module of its own so the SD sides (side.py) and the SDXL floor (side_xl.py) read one copy.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

# --model of a side: the embedded tiny models (built in code, at the benchmark's resolution),
# the shipped toy worlds (as they ship, 32 px), or a real SDXL (--model-path, the resolution).
SHIPPED = ("toyworld", "toyworld_xl")
XL_MODELS = ("tiny_xl", "toyworld_xl", "sdxl")
MODELS = ("tiny", "toyworld", *XL_MODELS)

# What each step variant trains; the floor does the same work without the product around it.
STEP_VARIANTS = {
    "unet": ["train.text_encoder=false", "prior.enabled=false"],
    "te": ["train.text_encoder=true", "prior.enabled=false"],
    "prior": ["train.text_encoder=true", "prior.enabled=true"],
    # LoRA on the UNet's attention, rank 4 (conf/method/lora.yaml): train_dreambooth_lora_sdxl's
    "lora": ["method=lora", "train.text_encoder=false", "prior.enabled=false"],
}


def model_overrides(args: argparse.Namespace) -> list[str]:
    """The train.py overrides that choose the side's model (and its resolution)."""
    if args.model in SHIPPED:
        return [f"model={args.model}"]
    size = [f"data.resolution={args.resolution}", f"model.sample_size={args.resolution}"]
    if args.model == "sdxl":
        return ["model=sdxl", f"model.path={args.model_path}", *size]
    return [f"model={args.model}", *size]  # tiny, tiny_xl: whatever the default model is


def run_overrides(args: argparse.Namespace) -> list[str]:
    """The train.py overrides every in-process side shares: model, precision, no tracking."""
    return [
        *model_overrides(args),
        "tracker=disk",
        "ema.enabled=false",  # the floor has no EMA; EMA is a feature, not step overhead
        "train.max_steps=100000",
        f"launcher.mixed_precision={args.precision}",
    ]


def autocast(args: argparse.Namespace) -> contextlib.AbstractContextManager:
    """Mixed precision as Accelerate applies it: fp32 weights, autocast for the forward."""
    import torch

    if args.precision == "no":
        return contextlib.nullcontext()
    dtype = torch.float16 if args.precision == "fp16" else torch.bfloat16
    return torch.autocast(args.device, dtype=dtype)


def fastest_adamw(params: list[Any]) -> Any:
    """AdamW with torch's fused kernel (CPU and CUDA, torch >= 2.4), else its foreach one: a
    floor is the fastest plain loop, not the default for-loop over parameters."""
    import torch

    try:
        return torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01, fused=True)
    except RuntimeError:
        return torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01, foreach=True)


def count_params(module: Any) -> int:
    return sum(p.numel() for p in module.parameters())
