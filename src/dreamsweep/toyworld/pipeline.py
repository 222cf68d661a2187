"""Assemble, save and load the toy-world model as an ordinary diffusers pipeline folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from dreamsweep.models.portable import make_portable
from dreamsweep.toyworld import BASE_DIR
from dreamsweep.toyworld.models import sampling_scheduler


def assemble(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    tokenizer: CLIPTokenizer,
) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline without safety checker (there is nothing to filter)."""
    return StableDiffusionPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        unet=unet.eval(),
        scheduler=sampling_scheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_folder(pipe: StableDiffusionPipeline, folder: Path) -> None:
    """Write the folder next to its destination, then swap it in, so readers never see half."""
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    make_portable(tmp)  # keys and tokenizer files transformers 4.x reads too
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)


def load(folder: Path = BASE_DIR) -> StableDiffusionPipeline:
    """The shipped base by default, offline, fp32, progress bar off."""
    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


@torch.no_grad()
def sample(
    pipe: StableDiffusionPipeline, prompts: list[str], seed: int, steps: int = 20, cfg: float = 3.0
) -> list:
    """The study's best sampler: DDIM 20 steps, classifier-free guidance 3."""
    generator = torch.Generator().manual_seed(seed)
    out = pipe(prompts, num_inference_steps=steps, guidance_scale=cfg, generator=generator)
    return out.images
