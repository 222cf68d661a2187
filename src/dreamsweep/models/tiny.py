"""A seeded, offline, CPU-sized Stable Diffusion for tests and `+debug=fast`.

Same architecture family and scheduler settings as SD 1.x, just tiny, so every code path
(training, sampling, save/load as a diffusers pipeline) runs without a download or a GPU.
"""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from dreamsweep import ASSETS_DIR
from dreamsweep.models.components import SDComponents

TINY_TOKENIZER_DIR = ASSETS_DIR / "tiny_tokenizer"

# SD 1.x's scheduler_config.json; DDPMScheduler keeps the PNDM-only keys in its config so a
# sampling scheduler built from it matches what SD 1.x ships.
SD_SCHEDULER_CONFIG = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
}

MAX_PROMPT_TOKENS = 77
VAE_SCALING_FACTOR = 0.18215  # SD 1.x latent scale


def load_tiny_tokenizer() -> CLIPTokenizer:
    """The CLIP BPE tokenizer learned by tools/make_tiny_vocab.py and shipped in the package.

    Loaded via from_pretrained because in transformers 5
    ``CLIPTokenizer(vocab_file=..., merges_file=...)`` silently ignores those keywords and
    builds a 3-token tokenizer.
    """
    return CLIPTokenizer.from_pretrained(
        TINY_TOKENIZER_DIR, model_max_length=MAX_PROMPT_TOKENS, local_files_only=True
    )


def sd_noise_scheduler() -> DDPMScheduler:
    """The DDPM training scheduler with Stable Diffusion 1.x settings."""
    return DDPMScheduler.from_config(SD_SCHEDULER_CONFIG)


def _tiny_vae(sample_size: int) -> AutoencoderKL:
    # Three blocks -> two downsamples -> vae scale factor 4 (64px image -> 16x16 latent).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=sample_size,
        scaling_factor=VAE_SCALING_FACTOR,
    )


def _tiny_unet(latent_size: int) -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def _text_config(tokenizer: CLIPTokenizer, layers: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        hidden_size=32,
        intermediate_size=37,
        num_attention_heads=4,
        num_hidden_layers=layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=MAX_PROMPT_TOKENS,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=32,
    )


def _tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    return CLIPTextModel(_text_config(tokenizer, layers=2))


def build_tiny(seed: int = 0, sample_size: int = 64) -> SDComponents:
    """Build the tiny model with weights fixed by ``seed``, leaving the global RNG untouched."""
    tokenizer = load_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = _tiny_vae(sample_size)
        unet = _tiny_unet(sample_size // 4)
        text_encoder = _tiny_text_encoder(tokenizer)
    return SDComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=sd_noise_scheduler(),
    )


def _tiny_xl_unet(latent_size: int) -> UNet2DConditionModel:
    """diffusers' own SDXL test UNet (tests/pipelines/stable_diffusion_xl/
    test_stable_diffusion_xl.py, get_dummy_components): text_time added conditioning,
    6 * 8 time-id widths + the 32-wide pooled text = 80."""
    return UNet2DConditionModel(
        block_out_channels=(2, 4),
        layers_per_block=2,
        sample_size=latent_size,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80,
        cross_attention_dim=64,
        norm_num_groups=1,
    )


def _tiny_xl_vae(sample_size: int) -> AutoencoderKL:
    """The same test's VAE: two blocks, one downsample (64 px image -> 32x32 latent)."""
    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
        sample_size=sample_size,
    )


def build_tiny_xl(seed: int = 0, sample_size: int = 64) -> SDComponents:
    """A tiny SDXL in diffusers' test shape, our tokenizer in both slots (theirs needs the
    hub); the text encoders have the test's 5 layers and 32 widths, the second projected."""
    from dreamsweep.models.families import sdxl

    tokenizer = load_tiny_tokenizer()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet = _tiny_xl_unet(sample_size // 2)
        vae = _tiny_xl_vae(sample_size)
        text_encoder = CLIPTextModel(_text_config(tokenizer, layers=5))
        text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, layers=5))
    sdxl.check_sizes(unet, text_encoder, text_encoder_2)
    return SDComponents(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=sd_noise_scheduler(),
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,
        family="sdxl",
    )
