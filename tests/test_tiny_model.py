"""The embedded tiny Stable Diffusion: deterministic, offline, and a real diffusers pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline
from PIL import Image

from dreamsweep.models.components import SDComponents
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.models.tiny import build_tiny, load_tiny_tokenizer

PROMPT = "a photo of sks toy"
MODULES = ("unet", "vae", "text_encoder")


@pytest.fixture(scope="module")
def tiny() -> SDComponents:
    return build_tiny(seed=0)


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _generate(pipe: StableDiffusionPipeline, seed: int = 0) -> Image.Image:
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(PROMPT, num_inference_steps=2, generator=generator).images[0]


def test_tokenizer_round_trips_a_dreambooth_prompt() -> None:
    tokenizer = load_tiny_tokenizer()
    ids = tokenizer(PROMPT).input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert len(ids) <= 8  # learned merges make whole words single tokens
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROMPT
    assert tokenizer.model_max_length == 77


def test_same_seed_same_weights_and_global_rng_untouched(tiny: SDComponents) -> None:
    rng_before = torch.get_rng_state()
    again = build_tiny(seed=0)
    assert torch.equal(rng_before, torch.get_rng_state())
    for name in MODULES:
        assert _states_equal(getattr(tiny, name), getattr(again, name)), name


def test_different_seed_different_weights(tiny: SDComponents) -> None:
    other = build_tiny(seed=1)
    for name in MODULES:
        assert not _states_equal(getattr(tiny, name), getattr(other, name)), name


def test_sd_1x_conventions(tiny: SDComponents) -> None:
    assert tiny.vae.config.scaling_factor == pytest.approx(0.18215)
    assert tiny.text_encoder.config.vocab_size == len(tiny.tokenizer)
    cfg = tiny.noise_scheduler.config
    assert (cfg.beta_schedule, cfg.beta_start, cfg.beta_end) == ("scaled_linear", 0.00085, 0.012)
    assert cfg.num_train_timesteps == 1000 and cfg.prediction_type == "epsilon"
    assert cfg.steps_offset == 1 and not cfg.clip_sample


@torch.no_grad()
def test_forward_shapes(tiny: SDComponents) -> None:
    image = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    latents = tiny.vae.encode(image).latent_dist.sample() * tiny.vae.config.scaling_factor
    assert latents.shape == (1, 4, 16, 16)

    tokens = tiny.tokenizer(
        PROMPT,
        padding="max_length",
        max_length=tiny.tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    )
    hidden = tiny.text_encoder(tokens.input_ids)[0]
    assert hidden.shape == (1, 77, 32)

    noise_pred = tiny.unet(latents, torch.tensor([10]), encoder_hidden_states=hidden).sample
    assert noise_pred.shape == latents.shape


def test_pipeline_generates_deterministic_image(tiny: SDComponents) -> None:
    pipe = assemble_pipeline(tiny)
    first, second = _generate(pipe), _generate(pipe)
    assert isinstance(first, Image.Image) and first.size == (64, 64)
    assert np.array_equal(np.asarray(first), np.asarray(second))


def test_save_and_reload_offline_gives_same_image(
    tiny: SDComponents, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pipe = assemble_pipeline(tiny)
    pipe.save_pretrained(tmp_path, safe_serialization=True)
    reloaded = StableDiffusionPipeline.from_pretrained(tmp_path)
    assert reloaded.safety_checker is None
    assert np.array_equal(np.asarray(_generate(pipe)), np.asarray(_generate(reloaded)))
