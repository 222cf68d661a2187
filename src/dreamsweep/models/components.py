"""The container every model source (tiny, pretrained) fills and training/sampling consume."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer


@dataclass
class SDComponents:
    """The parts of a Stable Diffusion model that training and sampling need. ``family`` names
    its entry in `models.families.FAMILIES`, which knows how to use the parts; SDXL fills the
    second text encoder and tokenizer."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    noise_scheduler: DDPMScheduler
    text_encoder_2: CLIPTextModelWithProjection | None = None
    tokenizer_2: CLIPTokenizer | None = None
    family: str = "sd"
    # SDXL's pipeline setting: the unconditional branch without a negative prompt is zeros
    force_zeros_for_empty_prompt: bool = True

    def modules(self) -> tuple[torch.nn.Module, ...]:
        """The UNet, the VAE and every text encoder (what is moved, cast or hashed)."""
        texts = (self.text_encoder, self.text_encoder_2)
        return (self.unet, self.vae, *(m for m in texts if m is not None))
