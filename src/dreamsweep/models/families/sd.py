"""Stable Diffusion 1.x/2.x: one CLIP text encoder whose last hidden state conditions the UNet.

The DDPM objective (uniform timesteps, epsilon or v target as the scheduler config says) is
shared with SDXL (`ddpm_timesteps`, `training.loss.regression_target`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTokenizer

from dreamsweep.models.components import SDComponents
from dreamsweep.models.families.base import Conditioning, Family
from dreamsweep.training.loss import regression_target


def ddpm_timesteps(scheduler, n: int, generator: torch.Generator) -> torch.Tensor:
    """Uniform over the training schedule, as every DDPM training script draws them."""
    return torch.randint(0, scheduler.config.num_train_timesteps, (n,), generator=generator)


def token_ids(tokenizer: CLIPTokenizer, prompts: list[str]) -> torch.Tensor:
    """Padded to the tokenizer's own maximum length (77 for SD, 16 for the toy world)."""
    return tokenizer(
        prompts,
        padding="max_length",
        truncation=True,
        max_length=tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids


def from_pretrained(source: str, weights: dict, common: dict) -> SDComponents:
    return SDComponents(
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", **weights),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", **weights),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **weights),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **common),
        # DDPM from the model's own scheduler config keeps prediction_type (v for SD 2.x 768).
        noise_scheduler=DDPMScheduler.from_pretrained(source, subfolder="scheduler", **common),
    )


def from_single_file(path: Path, local_files_only: bool) -> SDComponents:
    pipe = StableDiffusionPipeline.from_single_file(str(path), local_files_only=local_files_only)
    return components_of(pipe)


def components_of(pipe) -> SDComponents:
    """The SD parts of a loaded pipeline (shared, not copied), with a DDPM noise scheduler from
    its scheduler's config (same betas) for training."""
    return SDComponents(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
    )


def assemble(c: SDComponents, scheduler) -> StableDiffusionPipeline:
    """StableDiffusionPipeline over ``c`` without a safety checker (research use, tiny models)."""
    return StableDiffusionPipeline(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def tokenize(c: SDComponents, prompts: list[str]) -> torch.Tensor:
    return token_ids(c.tokenizer, prompts)[:, None]


def encode_ids(encoders, ids: torch.Tensor) -> Conditioning:
    """The last hidden state of the one encoder (no attention mask, as the training scripts)."""
    return Conditioning(encoders[0](ids[:, 0])[0])


def encode_prompt(c: SDComponents, prompt: str) -> Conditioning:
    """As StableDiffusionPipeline.encode_prompt, in the text encoder's dtype."""
    encoder, tokenizer = c.text_encoder, c.tokenizer
    tokens = tokenizer(
        prompt,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    mask = None
    if getattr(encoder.config, "use_attention_mask", False):
        mask = tokens.attention_mask.to(encoder.device)
    hidden = encoder(tokens.input_ids.to(encoder.device), attention_mask=mask)[0]
    return Conditioning(hidden.to(dtype=encoder.dtype))


def negative(c: SDComponents, encode, negative_prompt: str, n: int) -> Conditioning:
    """The unconditional branch: the negative prompt ("" when none) encoded like any prompt."""
    return encode([negative_prompt] * n)


def nothing_unread(c: SDComponents) -> tuple:
    return ()


def no_time_ids(resolution: int) -> None:
    return None


def text_only(conditioning: Conditioning, time_ids) -> Conditioning:
    return conditioning


def same_dtype(dtype: torch.dtype) -> torch.dtype:
    return dtype


FAMILY = Family(
    name="sd",
    pipeline_class=StableDiffusionPipeline,
    text_encoder_names=("text_encoder",),
    tokenizer_names=("tokenizer",),
    embedding_keys=("emb_params",),
    unread_text_modules=nothing_unread,
    from_pretrained=from_pretrained,
    from_single_file=from_single_file,
    assemble=assemble,
    tokenize=tokenize,
    encode_ids=encode_ids,
    encode_prompt=encode_prompt,
    negative=negative,
    sampling_time_ids=no_time_ids,
    with_time_ids=text_only,
    vae_dtype=same_dtype,
    sample_timesteps=ddpm_timesteps,
    target=regression_target,
)
