"""The SDXL family's prompt encoding is diffusers' StableDiffusionXLPipeline's, bit for bit.

A tiny SDXL (the toy world's XL design, freshly initialised) is put into a real
``StableDiffusionXLPipeline``; its ``encode_prompt`` and ``_get_add_time_ids`` are the reference.
The second tokenizer pads with "!" as SDXL's does, so a swapped tokenizer would show.
"""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPTokenizer

from dreamsweep.models.families import sdxl
from dreamsweep.toyworld import BASE_DIR
from dreamsweep.toyworld.models import XL_DESIGNS, build_xl_text_encoders, build_xl_unet
from dreamsweep.toyworld.pipeline import assemble_xl, load

PROMPTS = ["a red star on a white background", "a sks toy", ""]


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    tokenizer = CLIPTokenizer.from_pretrained(BASE_DIR / "tokenizer")
    design = XL_DESIGNS["xl1"]
    first, second = build_xl_text_encoders(design, tokenizer)
    vae = load(BASE_DIR).vae
    pipe = assemble_xl(build_xl_unet(design), vae, first, second, tokenizer)
    pipe.tokenizer_2 = CLIPTokenizer.from_pretrained(BASE_DIR / "tokenizer", pad_token="!")
    assert pipe.tokenizer_2.pad_token_id != pipe.tokenizer.pad_token_id
    return pipe


def _encoders(pipe) -> tuple:
    return pipe.text_encoder, pipe.text_encoder_2, pipe.tokenizer, pipe.tokenizer_2


def _ours(pipe, prompts: list[str]) -> sdxl.Conditioning:
    with torch.no_grad():
        return sdxl.encode_prompts(*_encoders(pipe), prompts, sdxl.time_ids((32, 32)))


def test_prompt_encoding_equals_the_pipelines_bit_for_bit(pipe):
    ours = _ours(pipe, PROMPTS)
    uncond = sdxl.unconditional(ours)  # force_zeros_for_empty_prompt, SDXL's default
    with torch.no_grad():
        hidden, neg_hidden, pooled, neg_pooled = pipe.encode_prompt(PROMPTS, device="cpu")
    assert ours.hidden_states.shape == (3, 16, 32 + 64) and ours.pooled.shape == (3, 64)
    assert torch.equal(ours.hidden_states, hidden) and torch.equal(ours.pooled, pooled)
    assert torch.equal(uncond.hidden_states, neg_hidden) and not neg_hidden.any()
    assert torch.equal(uncond.pooled, neg_pooled) and not neg_pooled.any()
    assert torch.equal(uncond.time_ids, ours.time_ids)


def test_the_unconditional_branch_without_forced_zeros_encodes_the_empty_prompt(pipe):
    pipe.register_to_config(force_zeros_for_empty_prompt=False)
    try:
        with torch.no_grad():
            _, neg_hidden, _, neg_pooled = pipe.encode_prompt(PROMPTS, device="cpu")
            uncond = sdxl.unconditional(_ours(pipe, PROMPTS), False, _encoders(pipe))
            _, neg_given, _, neg_pooled_given = pipe.encode_prompt(
                PROMPTS, device="cpu", negative_prompt=["a toy"] * 3
            )
            negative = sdxl.encode_text(*_encoders(pipe), ["a toy"] * 3)
    finally:
        pipe.register_to_config(force_zeros_for_empty_prompt=True)
    assert neg_hidden.any()
    assert torch.equal(uncond.hidden_states, neg_hidden) and torch.equal(uncond.pooled, neg_pooled)
    assert torch.equal(negative[0], neg_given) and torch.equal(negative[1], neg_pooled_given)
    with pytest.raises(ValueError, match="needs the encoders"):
        sdxl.unconditional(uncond, force_zeros_for_empty_prompt=False)


@pytest.mark.parametrize(
    ("original", "crop", "target"),
    [((32, 32), (0, 0), (32, 32)), ((1080, 1920), (12, 40), (1024, 1024))],
)
def test_time_ids_match_the_pipelines(pipe, original, crop, target):
    projection = pipe.text_encoder_2.config.projection_dim
    expected = pipe._get_add_time_ids(original, crop, target, torch.float32, projection)
    ours = sdxl.time_ids(original, crop, target)
    assert ours.shape == (1, 6) and torch.equal(ours, expected)
    assert torch.equal(sdxl.time_ids((32, 32)), sdxl.time_ids((32, 32), (0, 0), (32, 32)))


def test_caption_dropout_zeroes_exactly_the_empty_prompts(pipe):
    ours = _ours(pipe, PROMPTS)
    dropped = sdxl.drop_empty_prompts(ours, PROMPTS)
    assert torch.equal(dropped.hidden_states[:2], ours.hidden_states[:2])
    assert torch.equal(dropped.pooled[:2], ours.pooled[:2])
    assert not dropped.hidden_states[2].any() and not dropped.pooled[2].any()
    assert ours.hidden_states[2].any()  # "" encodes to something; dropout makes it zeros


def test_the_conditioning_drives_the_unet_as_the_pipeline_does(pipe):
    conditioning = _ours(pipe, PROMPTS[:2])
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    kwargs = conditioning.unet_kwargs()
    with torch.no_grad():
        ours = pipe.unet(latents, 10, **kwargs).sample
        theirs = pipe.unet(
            latents,
            10,
            encoder_hidden_states=conditioning.hidden_states,
            added_cond_kwargs={
                "text_embeds": conditioning.pooled,
                "time_ids": pipe._get_add_time_ids(
                    (32, 32), (0, 0), (32, 32), torch.float32, 64
                ).repeat(2, 1),
            },
        ).sample
    assert len(conditioning) == 2 and torch.equal(ours, theirs)
