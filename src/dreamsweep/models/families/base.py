"""What every model family provides: one `Conditioning` value and one `Family` table entry.

A family is a record of plain functions (DESIGN: one seam per kind of variation, a table keyed
by name), not a class hierarchy: SD 1.x/2.x and SDXL share the DDPM loss target and timestep
sampling by pointing at the same functions, and a flow-matching family (SD3, Flux) would point
at its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Conditioning:
    """Everything the UNet is conditioned on, one row per image: the text's hidden states; SDXL
    adds the pooled text embedding and the six micro-conditioning time ids."""

    hidden_states: torch.Tensor  # (batch, tokens, width)
    pooled: torch.Tensor | None = None  # SDXL: (batch, te2.projection_dim)
    time_ids: torch.Tensor | None = None  # SDXL: (batch, 6)

    def unet_kwargs(self) -> dict:
        """The keyword arguments of ``UNet2DConditionModel.forward`` besides sample and t."""
        if self.pooled is None:
            return {"encoder_hidden_states": self.hidden_states}
        return {
            "encoder_hidden_states": self.hidden_states,
            "added_cond_kwargs": {"text_embeds": self.pooled, "time_ids": self.time_ids},
        }

    def __len__(self) -> int:
        return self.hidden_states.shape[0]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Conditioning:
        return Conditioning(*(None if t is None else fn(t) for t in self._fields()))

    def _fields(self) -> tuple:
        return (self.hidden_states, self.pooled, self.time_ids)

    def select(self, index: torch.Tensor) -> Conditioning:
        """The rows ``index`` (e.g. the prompts of a batch from a table of all prompts)."""
        return self._map(lambda t: t[index.to(t.device)])

    def to(self, device=None, dtype: torch.dtype | None = None) -> Conditioning:
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def with_time_ids(self, time_ids: torch.Tensor | None) -> Conditioning:
        return replace(self, time_ids=time_ids)

    @staticmethod
    def cat(parts: Sequence[Conditioning]) -> Conditioning:
        """Rows of ``parts`` one after the other (e.g. [unconditional; prompts] for guidance)."""
        fields = zip(*(p._fields() for p in parts), strict=True)
        return Conditioning(*(None if f[0] is None else torch.cat(f) for f in fields))


@dataclass(frozen=True)
class Family:
    """Everything that differs between architectures; training, sampling and saving call these
    and never ask which architecture they drive. ``c`` is an ``SDComponents``."""

    name: str
    pipeline_class: type  # what users load: StableDiffusionPipeline, StableDiffusionXLPipeline
    # Components of the text side, in prepare/save order: what train.text_encoder and the
    # text-encoder LoRA targets reach.
    text_encoder_names: tuple[str, ...]
    # Each text encoder's tokenizer (same order), and the key of its vectors in the A1111 /
    # ComfyUI embedding file (SD: `emb_params`; SDXL: `clip_l`, `clip_g`).
    tokenizer_names: tuple[str, ...]
    embedding_keys: tuple[str, ...]
    # Parts of the text encoders the conditioning never reads (SDXL's first encoder: its last
    # layer and final norm, as it reads the penultimate states): kept frozen, so that nothing
    # trains without a gradient and DDP does not wait for one.
    unread_text_modules: Callable  # (c) -> tuple of modules
    from_pretrained: Callable  # (source, weights kwargs, common kwargs) -> SDComponents
    from_single_file: Callable  # (path, local_files_only) -> SDComponents
    assemble: Callable  # (c, scheduler) -> the family's diffusers pipeline over c's modules
    # Training: token ids of prompts (prompts, tokens per tokenizer, length), and the
    # conditioning the text encoders make of them (the training scripts' encode_prompt).
    tokenize: Callable  # (c, prompts) -> LongTensor [N, tokenizers, L]
    encode_ids: Callable  # (encoders, ids) -> Conditioning (no time ids)
    # Sampling: one prompt as the pipeline's encode_prompt does it, and the negative branch.
    encode_prompt: Callable  # (c, prompt) -> Conditioning with one row
    negative: Callable  # (c, encode, negative_prompt, n) -> Conditioning of n rows
    sampling_time_ids: Callable  # (resolution) -> (1, 6) tensor or None
    with_time_ids: Callable  # (Conditioning, time ids or None) -> what the UNet takes
    vae_dtype: Callable  # (mixed-precision dtype) -> the VAE's dtype in training
    # The diffusion objective: which timesteps a step trains and what the UNet must predict.
    sample_timesteps: Callable  # (scheduler, n, generator) -> LongTensor [n]
    target: Callable  # (scheduler, latents, noise, timesteps) -> Tensor

    def text_encoders(self, c) -> tuple[torch.nn.Module, ...]:
        return tuple(getattr(c, name) for name in self.text_encoder_names)

    def text_pairs(self, c) -> list[tuple]:
        """(tokenizer, text encoder) of each text encoder, in the family's order."""
        names = zip(self.tokenizer_names, self.text_encoder_names, strict=True)
        return [(getattr(c, t), getattr(c, e)) for t, e in names]
