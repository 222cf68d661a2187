"""One `.safetensors` in the original Stable Diffusion (CompVis/LDM) key layout.

A1111 and ComfyUI load a checkpoint as the LDM code names its weights
(`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`), not as diffusers does.
The mapping is the inverse of diffusers' own reader (`diffusers/loaders/single_file_utils.py`:
`convert_ldm_unet_checkpoint`, `convert_ldm_vae_checkpoint`, `convert_ldm_clip_checkpoint`,
`convert_open_clip_checkpoint`) and of the classic
`huggingface/diffusers: scripts/convert_diffusers_to_original_stable_diffusion.py`. That script
hard-codes SD's four blocks with two layers each; here the block table comes from the UNet and
VAE configs, so an SD-shaped model of any size (our tiny test model included) maps correctly.

The functions only rename, reshape and cast the state dicts they are given: the caller decides
which weights go in (the EMA weights for an EMA cell); no `model_ema.*` copy is written, so the
file is EMA-only exactly when it is given EMA weights. The text encoder goes through
:mod:`dreamsweep.export.ldm_text` (`clip` layout for SD 1.x, `open_clip` for SD 2.x, `sdxl` for
SDXL's two encoders under `conditioner.embedders.*`).

SDXL's UNet uses the same LDM (sgm) names plus `label_emb.0.{0,2}` for the `text_time`
embedding (`add_embedding.linear_{1,2}`), as `scripts/convert_diffusers_to_original_sdxl.py`
maps them; that script hard-codes SDXL's three levels, the table here again follows the config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from dreamsweep.export.ldm_text import (
    convert_clip_to_ldm,
    convert_clip_to_open_clip,
    convert_sdxl_text_encoders,
)
from dreamsweep.export.metadata import WrittenFile, write_safetensors

Tensor = torch.Tensor
StateDict = Mapping[str, Tensor]
TextLayout = Literal["clip", "open_clip", "sdxl"]
TEXT_LAYOUTS: dict[str, TextLayout] = {"v1": "clip", "v2": "open_clip", "xl": "sdxl"}  # by version

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",  # SDXL's text_time embedding
    "add_embedding.linear_2.": "label_emb.0.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "time_emb_proj.": "emb_layers.1.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "conv_shortcut.": "skip_connection.",
}
_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _has_attention(block_type: str) -> bool:
    return "Attn" in block_type


def unet_prefix_map(config: Mapping[str, Any]) -> dict[str, str]:
    """diffusers module prefix -> LDM prefix for every block of a UNet with this config.

    LDM numbers `input_blocks` / `output_blocks` consecutively: each layer of a down block is
    one input block (resnet at `.0`, attention at `.1`), a downsampler is a block of its own;
    each up block has `layers_per_block + 1` output blocks and its upsampler sits after the
    last layer's attention (`.2`) or resnet (`.1`).
    """
    layers = config["layers_per_block"]
    if not isinstance(layers, int):
        raise ValueError("the LDM layout needs one layers_per_block for every block")
    if config.get("mid_block_type") not in (None, "UNetMidBlock2DCrossAttn"):
        raise ValueError(f"unsupported mid block {config.get('mid_block_type')!r}")
    n_blocks = len(config["block_out_channels"])
    prefixes = dict(_UNET_TOP)
    index = 1
    for i, block_type in enumerate(config["down_block_types"]):
        for j in range(layers):
            prefixes[f"down_blocks.{i}.resnets.{j}."] = f"input_blocks.{index}.0."
            if _has_attention(block_type):
                prefixes[f"down_blocks.{i}.attentions.{j}."] = f"input_blocks.{index}.1."
            index += 1
        if i < n_blocks - 1:
            prefixes[f"down_blocks.{i}.downsamplers.0.conv."] = f"input_blocks.{index}.0.op."
            index += 1
    prefixes["mid_block.resnets.0."] = "middle_block.0."
    prefixes["mid_block.attentions.0."] = "middle_block.1."
    prefixes["mid_block.resnets.1."] = "middle_block.2."
    index = 0
    for i, block_type in enumerate(config["up_block_types"]):
        attention = _has_attention(block_type)
        for j in range(layers + 1):
            prefixes[f"up_blocks.{i}.resnets.{j}."] = f"output_blocks.{index}.0."
            if attention:
                prefixes[f"up_blocks.{i}.attentions.{j}."] = f"output_blocks.{index}.1."
            index += 1
        if i < n_blocks - 1:
            prefixes[f"up_blocks.{i}.upsamplers.0."] = (
                f"output_blocks.{index - 1}.{2 if attention else 1}."
            )
    return prefixes


def _rename(key: str, prefixes: Mapping[str, str]) -> tuple[str, str] | None:
    """(new prefix + rest, diffusers prefix) for the longest matching prefix, or None."""
    matches = [p for p in prefixes if key.startswith(p)]
    if not matches:
        return None
    best = max(matches, key=len)
    return prefixes[best] + key[len(best) :], best


def _replace_prefix(text: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if text.startswith(old):
            return new + text[len(old) :]
    return text


def ldm_unet_key(key: str, prefixes: Mapping[str, str]) -> str:
    """One diffusers UNet key (or module path + `.weight`) in LDM names, without
    `model.diffusion_model.`; ``prefixes`` from :func:`unet_prefix_map`."""
    renamed = _rename(key, prefixes)
    if renamed is None:
        raise ValueError(f"UNet key {key!r} has no place in the LDM layout")
    new_key, matched = renamed
    if ".resnets." in matched:
        head = prefixes[matched]
        new_key = head + _replace_prefix(new_key[len(head) :], _UNET_RESNET)
    return new_key


def convert_unet_to_ldm(state_dict: StateDict, config: Mapping[str, Any]) -> dict[str, Tensor]:
    """The UNet's weights under `model.diffusion_model.` with LDM names (shapes unchanged)."""
    prefixes = unet_prefix_map(config)
    return {UNET_PREFIX + ldm_unet_key(key, prefixes): value for key, value in state_dict.items()}


def vae_prefix_map(config: Mapping[str, Any]) -> dict[str, str]:
    """diffusers prefix -> LDM prefix for an AutoencoderKL; LDM numbers decoder levels from the
    bottom (`up.0` is the last diffusers up block)."""
    n_up = len(config["up_block_types"])
    prefixes: dict[str, str] = {}
    for i in range(len(config["down_block_types"])):
        prefixes[f"encoder.down_blocks.{i}.resnets."] = f"encoder.down.{i}.block."
        prefixes[f"encoder.down_blocks.{i}.downsamplers.0."] = f"encoder.down.{i}.downsample."
    for i in range(n_up):
        prefixes[f"decoder.up_blocks.{i}.resnets."] = f"decoder.up.{n_up - 1 - i}.block."
        prefixes[f"decoder.up_blocks.{i}.upsamplers.0."] = f"decoder.up.{n_up - 1 - i}.upsample."
    for part in ("encoder", "decoder"):
        prefixes[f"{part}.mid_block.resnets.0."] = f"{part}.mid.block_1."
        prefixes[f"{part}.mid_block.resnets.1."] = f"{part}.mid.block_2."
        prefixes[f"{part}.mid_block.attentions.0."] = f"{part}.mid.attn_1."
        prefixes[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        for same in ("conv_in.", "conv_out."):
            prefixes[f"{part}.{same}"] = f"{part}.{same}"
    for same in ("quant_conv.", "post_quant_conv."):
        prefixes[same] = same
    return prefixes


def convert_vae_to_ldm(state_dict: StateDict, config: Mapping[str, Any]) -> dict[str, Tensor]:
    """The VAE under `first_stage_model.`; attention projections become 1x1 convs as in LDM."""
    prefixes = vae_prefix_map(config)
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        renamed = _rename(key, prefixes)
        if renamed is None:
            raise ValueError(f"VAE key {key!r} has no place in the LDM layout")
        new_key, matched = renamed
        head = prefixes[matched]
        rest = new_key[len(head) :]
        if ".attentions." in matched:
            rest = _replace_prefix(rest, _VAE_ATTENTION)
            if value.ndim == 2:
                value = value.reshape(*value.shape, 1, 1)
        elif ".resnets." in matched:
            rest = rest.replace("conv_shortcut.", "nin_shortcut.", 1)
        out[VAE_PREFIX + head + rest] = value
    return out


def build_ldm_checkpoint(
    *,
    unet: StateDict,
    unet_config: Mapping[str, Any],
    vae: StateDict,
    vae_config: Mapping[str, Any],
    text_encoder: StateDict,
    text_layout: TextLayout = "clip",
    dtype: torch.dtype = torch.float32,
    text_encoder_2: StateDict | None = None,
) -> dict[str, Tensor]:
    """UNet, VAE and text encoder(s) in one LDM state dict, floating tensors cast to `dtype`;
    ``text_encoder_2`` is SDXL's second encoder (layout `sdxl`)."""
    text = _text_to_ldm(text_encoder, text_layout, text_encoder_2)
    merged = {
        **convert_unet_to_ldm(unet, unet_config),
        **convert_vae_to_ldm(vae, vae_config),
        **text,
    }
    return {
        k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).contiguous()
        for k, v in merged.items()
    }


def _text_to_ldm(
    text_encoder: StateDict, layout: TextLayout, text_encoder_2: StateDict | None
) -> dict[str, Tensor]:
    if (layout == "sdxl") != (text_encoder_2 is not None):
        raise ValueError(f"text layout {layout!r}: a second text encoder is for `sdxl` only")
    if layout == "clip":
        return convert_clip_to_ldm(text_encoder)
    if layout == "open_clip":
        return convert_clip_to_open_clip(text_encoder)
    if layout == "sdxl":
        return convert_sdxl_text_encoders(text_encoder, text_encoder_2)
    raise ValueError(f"unknown text layout {layout!r}; known: clip, open_clip, sdxl")


def write_single_file(
    path: str | Path,
    *,
    unet: StateDict,
    unet_config: Mapping[str, Any],
    vae: StateDict,
    vae_config: Mapping[str, Any],
    text_encoder: StateDict,
    text_layout: TextLayout = "clip",
    dtype: torch.dtype = torch.float32,
    metadata: Mapping[str, str] | None = None,
    text_encoder_2: StateDict | None = None,
) -> WrittenFile:
    """Write the checkpoint (see :func:`build_ldm_checkpoint`) with `metadata` plus its hash."""
    checkpoint = build_ldm_checkpoint(
        unet=unet,
        unet_config=unet_config,
        vae=vae,
        vae_config=vae_config,
        text_encoder=text_encoder,
        text_layout=text_layout,
        dtype=dtype,
        text_encoder_2=text_encoder_2,
    )
    return write_safetensors(path, checkpoint, metadata or {})


def write_pipeline_single_file(
    pipeline: Any,
    path: str | Path,
    *,
    text_layout: TextLayout = "clip",
    dtype: torch.dtype = torch.float32,
    metadata: Mapping[str, str] | None = None,
) -> WrittenFile:
    """:func:`write_single_file` for the weights a pipeline (or SDComponents) holds now; an
    SDXL one (layout `sdxl`) gives its `text_encoder_2` too."""
    second = pipeline.text_encoder_2.state_dict() if text_layout == "sdxl" else None
    return write_single_file(
        path,
        unet=pipeline.unet.state_dict(),
        unet_config=pipeline.unet.config,
        vae=pipeline.vae.state_dict(),
        vae_config=pipeline.vae.config,
        text_encoder=pipeline.text_encoder.state_dict(),
        text_layout=text_layout,
        dtype=dtype,
        metadata=metadata,
        text_encoder_2=second,
    )
