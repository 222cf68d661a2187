"""Stable Diffusion XL prompt encoding, exactly as diffusers' StableDiffusionXLPipeline does it.

Two text encoders read the prompt: the penultimate hidden states of both are concatenated
(the UNet's cross-attention input) and the projected pooled output of the second
(``CLIPTextModelWithProjection.text_embeds``) joins six micro-conditioning integers (original
size, crop top-left, target size) in the UNet's ``text_time`` embedding. Pure functions, so
training, sampling and tests share one copy and can check it against the pipeline bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

N_TIME_IDS = 6  # original_size (h, w) + crop_top_left (top, left) + target_size (h, w)


@dataclass(frozen=True)
class Conditioning:
    """Everything the SDXL UNet is conditioned on, one row per image."""

    hidden_states: torch.Tensor  # (batch, tokens, te1.hidden + te2.hidden)
    pooled: torch.Tensor  # (batch, te2.projection_dim): text_encoder_2's text_embeds
    time_ids: torch.Tensor  # (batch, 6)

    def unet_kwargs(self) -> dict:
        """The keyword arguments of ``UNet2DConditionModel.forward`` besides sample and t."""
        return {
            "encoder_hidden_states": self.hidden_states,
            "added_cond_kwargs": {"text_embeds": self.pooled, "time_ids": self.time_ids},
        }

    def __len__(self) -> int:
        return self.hidden_states.shape[0]


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
