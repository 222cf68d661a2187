"""Assemble, save and load the toy-world model as an ordinary diffusers pipeline folder."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from dreamsweep.atomic import new_folder
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


def assemble_xl(
    unet: UNet2DConditionModel,
    vae: AutoencoderKL,
    text_encoder: CLIPTextModel,
    text_encoder_2: CLIPTextModelWithProjection,
    tokenizer: CLIPTokenizer,
) -> StableDiffusionXLPipeline:
    """A StableDiffusionXLPipeline with the toy-world tokenizer in both tokenizer slots, the
    SDXL default force_zeros_for_empty_prompt and no watermark (it would alter the pixels)."""
    return StableDiffusionXLPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        text_encoder_2=text_encoder_2.eval(),
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet.eval(),
        scheduler=sampling_scheduler(),
        force_zeros_for_empty_prompt=True,
        add_watermarker=False,
    )


def save_folder(pipe: StableDiffusionPipeline, folder: Path) -> None:
    """Write the folder next to its destination, then swap it in, so readers never see half."""
    with new_folder(Path(folder)) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        make_portable(tmp)  # keys and tokenizer files transformers 4.x reads too


def load(folder: Path = BASE_DIR) -> StableDiffusionPipeline | StableDiffusionXLPipeline:
    """The shipped base by default, offline, fp32, progress bar off; an SDXL folder loads as
    StableDiffusionXLPipeline (without watermark)."""
    index = json.loads((Path(folder) / "model_index.json").read_text())
    if index["_class_name"] == StableDiffusionXLPipeline.__name__:
        pipe = StableDiffusionXLPipeline.from_pretrained(
            str(folder), local_files_only=True, add_watermarker=False
        )
    else:
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
