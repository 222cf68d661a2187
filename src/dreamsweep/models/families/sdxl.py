"""Stable Diffusion XL prompt encoding, exactly as diffusers' StableDiffusionXLPipeline does it.

Two text encoders read the prompt: the penultimate hidden states of both are concatenated
(the UNet's cross-attention input) and the projected pooled output of the second
(``CLIPTextModelWithProjection.text_embeds``) joins six micro-conditioning integers (original
size, crop top-left, target size) in the UNet's ``text_time`` embedding. Pure functions, so
training, sampling and tests share one copy and can check it against the pipeline bit for bit.
The family entry (`FAMILY`, at the end) puts them behind the seam of `families/base.py`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from diffusers import (
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import sd
from dreamsweep.models.families.base import Conditioning, Family
from dreamsweep.models.families.sd import ddpm_timesteps, token_ids
from dreamsweep.training.loss import regression_target

N_TIME_IDS = 6  # original_size (h, w) + crop_top_left (top, left) + target_size (h, w)


def tokenize(tokenizer: CLIPTokenizer, prompts: list[str], max_length: int | None = None):
    """Token ids padded to the tokenizer's length (the pipeline pads negatives to the
    positive's length, which is the same number)."""
    return tokenizer(
        prompts,
        padding="max_length",
        max_length=max_length or tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def encode_text(
    text_encoder: CLIPTextModel,
    text_encoder_2: CLIPTextModelWithProjection,
    tokenizer: CLIPTokenizer,
    tokenizer_2: CLIPTokenizer,
    prompts: list[str],
) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states, pooled) of ``prompts``: penultimate layers concatenated, pooled of TE2."""
    first = text_encoder(tokenize(tokenizer, prompts), output_hidden_states=True)
    second = text_encoder_2(tokenize(tokenizer_2, prompts), output_hidden_states=True)
    hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    return hidden.to(text_encoder_2.dtype), second.text_embeds


def time_ids(
    original_size: tuple[int, int],
    crop_top_left: tuple[int, int] = (0, 0),
    target_size: tuple[int, int] | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The six micro-conditioning numbers as a (1, 6) tensor, as ``_get_add_time_ids`` builds
    them; ``target_size`` defaults to ``original_size`` (no resize)."""
    ids = list(tuple(original_size) + tuple(crop_top_left) + tuple(target_size or original_size))
    return torch.tensor([ids], dtype=dtype)


def encode_prompts(
    text_encoder: CLIPTextModel,
    text_encoder_2: CLIPTextModelWithProjection,
    tokenizer: CLIPTokenizer,
    tokenizer_2: CLIPTokenizer,
    prompts: list[str],
    image_time_ids: torch.Tensor,
) -> Conditioning:
    """The conditioning of ``prompts``; ``image_time_ids`` is (1, 6) for all or (batch, 6)."""
    hidden, pooled = encode_text(text_encoder, text_encoder_2, tokenizer, tokenizer_2, prompts)
    ids = image_time_ids.to(hidden.dtype).expand(len(prompts), N_TIME_IDS)
    return Conditioning(hidden, pooled, ids)


def unconditional(
    conditioning: Conditioning,
    force_zeros_for_empty_prompt: bool = True,
    encoders: tuple | None = None,
) -> Conditioning:
    """The classifier-free-guidance branch without a negative prompt, as the pipeline makes it:
    zeros when ``force_zeros_for_empty_prompt`` (SDXL's default), else the encoding of ""
    by ``encoders`` = (text_encoder, text_encoder_2, tokenizer, tokenizer_2). Same time ids."""
    if force_zeros_for_empty_prompt:
        hidden = torch.zeros_like(conditioning.hidden_states)
        pooled = torch.zeros_like(conditioning.pooled)
        return Conditioning(hidden, pooled, conditioning.time_ids)
    if encoders is None:
        raise ValueError("unconditional: force_zeros_for_empty_prompt=False needs the encoders")
    hidden, pooled = encode_text(*encoders, [""] * len(conditioning))
    return Conditioning(hidden, pooled, conditioning.time_ids)


def drop_empty_prompts(conditioning: Conditioning, prompts: list[str]) -> Conditioning:
    """Zero the text conditioning of empty prompts (caption dropout): what the unconditional
    branch is at sampling time under ``force_zeros_for_empty_prompt``, so training and
    guidance agree, as in SDXL's own training (its conditioner zeroes dropped captions)."""
    keep = torch.tensor([bool(p) for p in prompts], dtype=conditioning.hidden_states.dtype)
    return Conditioning(
        conditioning.hidden_states * keep[:, None, None],
        conditioning.pooled * keep[:, None],
        conditioning.time_ids,
    )


def check_sizes(
    unet: UNet2DConditionModel,
    text_encoder: CLIPTextModel,
    text_encoder_2: CLIPTextModelWithProjection,
) -> None:
    """The two width invariants of SDXL, checked before any forward pass fails obscurely."""
    widths = text_encoder.config.hidden_size + text_encoder_2.config.hidden_size
    if unet.config.cross_attention_dim != widths:
        raise ValueError(
            f"unet cross_attention_dim {unet.config.cross_attention_dim} != text encoder widths "
            f"{text_encoder.config.hidden_size} + {text_encoder_2.config.hidden_size}"
        )
    time_width = N_TIME_IDS * unet.config.addition_time_embed_dim
    added = time_width + text_encoder_2.config.projection_dim
    if unet.config.projection_class_embeddings_input_dim != added:
        raise ValueError(
            "unet projection_class_embeddings_input_dim "
            f"{unet.config.projection_class_embeddings_input_dim} != 6 * addition_time_embed_dim "
            f"({time_width}) + text_encoder_2 projection_dim {text_encoder_2.config.projection_dim}"
        )


# The family entry: loading, the pipeline, and the functions the seam calls.

TEXT_ENCODERS = ("text_encoder", "text_encoder_2")


def from_pretrained(source: str, weights: dict, common: dict) -> SDComponents:
    """SD's parts (the DDPM noise scheduler from the model's own config: SDXL ships Euler's,
    same betas), plus the second text encoder and tokenizer."""
    index = StableDiffusionXLPipeline.load_config(source, **common)
    return replace(
        sd.from_pretrained(source, weights, common),
        text_encoder_2=CLIPTextModelWithProjection.from_pretrained(
            source, subfolder="text_encoder_2", **weights
        ),
        tokenizer_2=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer_2", **common),
        family="sdxl",
        force_zeros_for_empty_prompt=index.get("force_zeros_for_empty_prompt", True),
    )


def from_single_file(path: Path, local_files_only: bool) -> SDComponents:
    pipe = StableDiffusionXLPipeline.from_single_file(
        str(path), local_files_only=local_files_only, add_watermarker=False
    )
    return components_of(pipe)


def components_of(pipe: StableDiffusionXLPipeline) -> SDComponents:
    """The components of a loaded StableDiffusionXLPipeline (shared, not copied)."""
    return replace(
        sd.components_of(pipe),
        text_encoder_2=pipe.text_encoder_2,
        tokenizer_2=pipe.tokenizer_2,
        family="sdxl",
        force_zeros_for_empty_prompt=pipe.config.force_zeros_for_empty_prompt,
    )


def assemble(c: SDComponents, scheduler) -> StableDiffusionXLPipeline:
    """StableDiffusionXLPipeline over ``c``, without the invisible watermark (it would alter
    the pixels that were scored)."""
    return StableDiffusionXLPipeline(
        vae=c.vae,
        text_encoder=c.text_encoder,
        text_encoder_2=c.text_encoder_2,
        tokenizer=c.tokenizer,
        tokenizer_2=c.tokenizer_2,
        unet=c.unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=c.force_zeros_for_empty_prompt,
        add_watermarker=False,
    )


def tokenize_both(c: SDComponents, prompts: list[str]) -> torch.Tensor:
    """[N, 2, L]: the ids of each tokenizer (SDXL's two pad differently)."""
    first, second = token_ids(c.tokenizer, prompts), token_ids(c.tokenizer_2, prompts)
    if first.shape != second.shape:
        raise ValueError(
            f"the two tokenizers pad to {first.shape[1]} and {second.shape[1]} tokens; "
            "SDXL's both pad to the same model_max_length (77)"
        )
    return torch.stack([first, second], dim=1)


def encode_ids(encoders, ids: torch.Tensor) -> Conditioning:
    """As the SDXL training scripts' encode_prompt (the encoders may be DDP-wrapped)."""
    first = encoders[0](ids[:, 0], output_hidden_states=True)
    second = encoders[1](ids[:, 1], output_hidden_states=True)
    hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    return Conditioning(hidden, second.text_embeds)


def encode_prompt(c: SDComponents, prompt: str) -> Conditioning:
    hidden, pooled = encode_text(
        c.text_encoder, c.text_encoder_2, c.tokenizer, c.tokenizer_2, [prompt]
    )
    return Conditioning(hidden, pooled)


def negative(c: SDComponents, encode, negative_prompt: str, n: int) -> Conditioning:
    """The pipeline's negative branch: zeros without a negative prompt when the pipeline says
    force_zeros_for_empty_prompt (SDXL's default), else the negative prompt encoded."""
    encoded = encode([negative_prompt] * n)
    if negative_prompt == "" and c.force_zeros_for_empty_prompt:
        return unconditional(encoded)
    return encoded


def sampling_time_ids(resolution: int) -> torch.Tensor:
    """The pipeline's default: original size = target size = the image, no crop."""
    return time_ids((resolution, resolution))


def with_time_ids(conditioning: Conditioning, ids: torch.Tensor) -> Conditioning:
    """``ids`` (1, 6) for every row or (rows, 6), in the hidden states' dtype and device."""
    hidden = conditioning.hidden_states
    ids = ids.to(hidden.device, hidden.dtype).expand(len(conditioning), N_TIME_IDS)
    return conditioning.with_time_ids(ids)


def unread_text_modules(c: SDComponents) -> tuple[torch.nn.Module, ...]:
    """text_encoder's last layer and final norm: its penultimate hidden states are read.
    (transformers 5's CLIPTextModel holds them itself, 4.x's under `text_model`.)"""
    text = getattr(c.text_encoder, "text_model", c.text_encoder)
    return (text.encoder.layers[-1], text.final_layer_norm)


def fp32_vae(dtype: torch.dtype) -> torch.dtype:
    """SDXL's VAE overflows in fp16 (diffusers' script keeps it in fp32 always)."""
    return torch.float32


FAMILY = Family(
    name="sdxl",
    pipeline_class=StableDiffusionXLPipeline,
    text_encoder_names=TEXT_ENCODERS,
    tokenizer_names=("tokenizer", "tokenizer_2"),
    embedding_keys=("clip_l", "clip_g"),  # A1111's and ComfyUI's SDXL embedding keys
    unread_text_modules=unread_text_modules,
    from_pretrained=from_pretrained,
    from_single_file=from_single_file,
    assemble=assemble,
    tokenize=tokenize_both,
    encode_ids=encode_ids,
    encode_prompt=encode_prompt,
    negative=negative,
    sampling_time_ids=sampling_time_ids,
    with_time_ids=with_time_ids,
    vae_dtype=fp32_vae,
    sample_timesteps=ddpm_timesteps,
    target=regression_target,
)
