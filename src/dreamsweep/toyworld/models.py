"""The toy-world Stable Diffusion parts: a small VAE, UNet and CLIP text encoder(s).

Same classes and scheduler as SD 1.x (or SDXL: two text encoders, ``text_time`` conditioning)
so the result is an ordinary ``StableDiffusionPipeline`` (or ``StableDiffusionXLPipeline``);
only the sizes are chosen for a 32x32 world that must pretrain on one CPU thread.
"""

from __future__ import annotations

from dataclasses import dataclass

from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from dreamsweep.models.families import sdxl
from dreamsweep.models.tiny import SD_SCHEDULER_CONFIG
from dreamsweep.toyworld.world import SIZE


@dataclass(frozen=True)
class Design:
    """A VAE downsampling factor and the UNet that fits its latent size."""

    vae_factor: int  # 1: latents 32x32x4 (pixel-space UNet); 2: latents 16x16x4
    vae_channels: tuple[int, ...]
    unet_channels: tuple[int, ...]
    unet_down: tuple[str, ...]
    unet_up: tuple[str, ...]

    @property
    def latent_size(self) -> int:
        return SIZE // self.vae_factor


# (a) the study's pixel-space UNet behind a VAE that does not downsample.
DESIGN_F1 = Design(
    vae_factor=1,
    vae_channels=(32,),
    unet_channels=(16, 32, 64),
    unet_down=("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D"),
    unet_up=("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
)
# (b) an f=2 VAE: 4x fewer latent positions, so a wider UNet with attention at 8x8 and 4x4.
DESIGN_F2 = Design(
    vae_factor=2,
    vae_channels=(32, 64),
    unet_channels=(32, 64, 64),
    unet_down=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    unet_up=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
)
DESIGNS = {"f1": DESIGN_F1, "f2": DESIGN_F2}

TEXT_WIDTH = 64


def build_vae(design: Design, scaling_factor: float = 1.0) -> AutoencoderKL:
    """A KL autoencoder with len(vae_channels)-1 downsamplings; no mid attention (too costly
    for what plain shapes need)."""
    n = len(design.vae_channels)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * n,
        up_block_types=("UpDecoderBlock2D",) * n,
        block_out_channels=design.vae_channels,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=SIZE,
        scaling_factor=scaling_factor,
        mid_block_add_attention=False,
    )


def build_unet(design: Design) -> UNet2DConditionModel:
    """The denoiser; attention_head_dim is the number of heads in diffusers' legacy naming."""
    return UNet2DConditionModel(
        sample_size=design.latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=design.unet_channels,
        layers_per_block=1,
        down_block_types=design.unet_down,
        up_block_types=design.unet_up,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def build_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    """A 2-layer, 64-wide CLIP text transformer trained from scratch with the UNet."""
    return CLIPTextModel(_text_config(tokenizer, TEXT_WIDTH, layers=2))


def _text_config(
    tokenizer: CLIPTokenizer, width: int, layers: int, projection_dim: int | None = None
) -> CLIPTextConfig:
    return CLIPTextConfig(
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=4,
        num_hidden_layers=layers,
        vocab_size=len(tokenizer),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=projection_dim or width,
    )


@dataclass(frozen=True)
class XLDesign:
    """The toy world in SDXL shape: the SD toy world's VAE and UNet layout (``layout``; SDXL's
    own block pattern: no attention at full latent size), two text encoders whose penultimate
    states concatenate to the cross-attention width, and the ``text_time`` added embedding."""

    layout: Design
    text_widths: tuple[int, int]  # text_encoder (CLIP-L's role), text_encoder_2 (OpenCLIP-G's)
    text_layers: int  # >= 3, so the penultimate states SDXL reads have 2 layers of context
    projection_dim: int  # text_encoder_2's pooled width
    time_embed_dim: int  # addition_time_embed_dim: sinusoid width per micro-conditioning id

    @property
    def cross_attention_dim(self) -> int:
        return sum(self.text_widths)

    @property
    def added_embed_dim(self) -> int:
        return sdxl.N_TIME_IDS * self.time_embed_dim + self.projection_dim


XL_DESIGNS = {
    "xl1": XLDesign(
        layout=DESIGN_F2, text_widths=(32, 64), text_layers=3, projection_dim=64, time_embed_dim=8
    )
}


def build_xl_unet(design: XLDesign) -> UNet2DConditionModel:
    """SDXL's UNet in toy size: ``text_time`` added conditioning and linear projections in the
    transformers (both as in SDXL); otherwise the SD toy world's UNet."""
    layout = design.layout
    return UNet2DConditionModel(
        sample_size=layout.latent_size,
        in_channels=4,
        out_channels=4,
        block_out_channels=layout.unet_channels,
        layers_per_block=1,
        down_block_types=layout.unet_down,
        up_block_types=layout.unet_up,
        cross_attention_dim=design.cross_attention_dim,
        attention_head_dim=4,
        norm_num_groups=8,
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=design.time_embed_dim,
        projection_class_embeddings_input_dim=design.added_embed_dim,
    )


def build_xl_text_encoders(
    design: XLDesign, tokenizer: CLIPTokenizer
) -> tuple[CLIPTextModel, CLIPTextModelWithProjection]:
    """The two encoders, both reading the toy-world tokenizer (SDXL's two tokenizers differ
    only in padding token; ours are one)."""
    first, second = design.text_widths
    return (
        CLIPTextModel(_text_config(tokenizer, first, design.text_layers)),
        CLIPTextModelWithProjection(
            _text_config(tokenizer, second, design.text_layers, design.projection_dim)
        ),
    )


def noise_scheduler() -> DDPMScheduler:
    """SD 1.x's training schedule (scaled_linear, 1000 steps, epsilon)."""
    return DDPMScheduler.from_config(SD_SCHEDULER_CONFIG)


def sampling_scheduler() -> DDIMScheduler:
    """DDIM with SD 1.x settings: the study's best sampler (20 steps, CFG 3)."""
    return DDIMScheduler.from_config(SD_SCHEDULER_CONFIG)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())
