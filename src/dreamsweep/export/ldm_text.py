"""Stable Diffusion text encoders in the key layouts of the original (LDM) checkpoints.

SD 1.x stores transformers' CLIPTextModel as it is under `cond_stage_model.transformer.`; SD 2.x
stores OpenCLIP under `cond_stage_model.model.` with OpenCLIP's names and q/k/v merged into one
`in_proj`. Inverse of diffusers' `convert_ldm_clip_checkpoint` / `convert_open_clip_checkpoint`
(`diffusers/loaders/single_file_utils.py`) and the same as
`scripts/convert_diffusers_to_original_stable_diffusion.py` (`convert_text_enc_state_dict_v20`)
and kohya's `library/model_util.py` (`convert_text_encoder_state_dict_to_sd_v2`).

SDXL keeps both: CLIP-L as transformers names it under `conditioner.embedders.0.transformer.`,
the OpenCLIP-bigG-shaped second encoder in OpenCLIP names under `conditioner.embedders.1.model.`
with its `text_projection` transposed (OpenCLIP multiplies `x @ proj`, transformers' Linear
`x @ W.T`), as `scripts/convert_diffusers_to_original_sdxl.py` and kohya's
`library/sdxl_model_util.py` (`convert_text_encoder_2_state_dict_to_sdxl`) write them and
diffusers' `convert_open_clip_checkpoint(..., prefix="conditioner.embedders.1.model.")` reads them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from dreamsweep.models.portable import with_text_root

Tensor = torch.Tensor
StateDict = Mapping[str, Tensor]

CLIP_PREFIX = "cond_stage_model.transformer."  # SD 1.x: HF CLIPTextModel keys under this
OPEN_CLIP_PREFIX = "cond_stage_model.model."  # SD 2.x: OpenCLIP keys under this
SDXL_CLIP_PREFIX = "conditioner.embedders.0.transformer."  # SDXL: CLIP-L, HF keys
SDXL_OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."  # SDXL: bigG-shaped, OpenCLIP keys

# SD 2.x's text encoder is OpenCLIP ViT-H/14 (24 blocks) read at its penultimate layer, so
# diffusers ships only 23 blocks. Files written by kohya sd-scripts
# (library/model_util.py convert_text_encoder_state_dict_to_sd_v2, make_dummy_weights) carry a
# 24th block copied from the 23rd plus a text_projection, so the LDM model that A1111/ComfyUI
# build finds every key; diffusers' reader skips exactly those keys
# (SD_2_TEXT_ENCODER_KEYS_TO_IGNORE).
SD2_DIFFUSERS_TEXT_LAYERS = 23


def _clip_keys(state_dict: StateDict) -> dict[str, Tensor]:
    """HF CLIP text keys with the `text_model.` root that LDM files use (transformers >= 5.6
    flattened CLIPTextModel and dropped it); the `position_ids` buffer is left out."""
    return {with_text_root(k): v for k, v in state_dict.items() if not k.endswith("position_ids")}


def convert_clip_to_ldm(state_dict: StateDict, prefix: str = CLIP_PREFIX) -> dict[str, Tensor]:
    """SD 1.x: the HF CLIPTextModel keys as they are, under `cond_stage_model.transformer.`
    (SDXL's first encoder: under ``prefix`` `conditioner.embedders.0.transformer.`)."""
    return {prefix + k: v for k, v in _clip_keys(state_dict).items()}


_OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}
_LAYER_ROOT = "text_model.encoder.layers."


def _open_clip_layer_keys(index: str, rest: str, value: Tensor, qkv: dict) -> dict[str, Tensor]:
    """One encoder-layer tensor in OpenCLIP names; q/k/v are collected into `qkv` to merge."""
    for proj, slot in (("q_proj.", 0), ("k_proj.", 1), ("v_proj.", 2)):
        if rest.startswith(f"self_attn.{proj}"):
            kind = rest.rsplit(".", 1)[1]  # weight | bias
            qkv.setdefault((index, kind), [None, None, None])[slot] = value
            return {}
    renamed = _replace_prefix(rest, _OPEN_CLIP_LAYER)
    if renamed == rest:
        raise ValueError(f"text encoder key {_LAYER_ROOT}{index}.{rest!r} has no OpenCLIP name")
    return {f"transformer.resblocks.{index}.{renamed}": value}


def convert_clip_to_open_clip(
    state_dict: StateDict, full_depth: int | None = None, prefix: str = OPEN_CLIP_PREFIX
) -> dict[str, Tensor]:
    """SD 2.x: the text encoder in OpenCLIP names under `cond_stage_model.model.`, q/k/v merged
    into `attn.in_proj_weight` / `in_proj_bias` (order q, k, v as torch's MultiheadAttention).

    `full_depth` pads the encoder to that many blocks with copies of its last block, plus a
    `text_projection` and `logit_scale`, as kohya does (kohya writes ones and 1; we write the
    identity and OpenCLIP's initial logit scale: SD 2.x reads neither). By default SD 2.x's 23
    blocks become 24 and any other depth is left as it is (diffusers' reader would load a padded
    block as a real one).
    """
    clip = _clip_keys(state_dict)
    out: dict[str, Tensor] = {}
    qkv: dict[tuple[str, str], list[Tensor | None]] = {}
    for key, value in clip.items():
        if key in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[key]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif key.startswith(_LAYER_ROOT):
            index, rest = key[len(_LAYER_ROOT) :].split(".", 1)
            out.update(_open_clip_layer_keys(index, rest, value, qkv))
        else:
            raise ValueError(f"text encoder key {key!r} has no OpenCLIP name")
    for (index, kind), parts in qkv.items():
        if any(p is None for p in parts):
            raise ValueError(f"layer {index} lacks one of q/k/v {kind}")
        out[f"transformer.resblocks.{index}.attn.in_proj_{kind}"] = torch.cat(parts)
    _pad_open_clip(out, full_depth)
    return {prefix + k: v for k, v in out.items()}


def convert_sdxl_text_encoders(first: StateDict, second: StateDict) -> dict[str, Tensor]:
    """SDXL's two text encoders in the original layout: CLIP-L (transformers' CLIPTextModel)
    as it is, the second (CLIPTextModelWithProjection) in OpenCLIP names with all its blocks
    (diffusers keeps every one: SDXL reads the penultimate hidden state itself) plus OpenCLIP's
    `logit_scale`, which the original files carry and SDXL does not read (kohya writes it back;
    we write OpenCLIP's initial value, as for SD 2.x)."""
    second_out = convert_clip_to_open_clip(second, full_depth=0, prefix=SDXL_OPEN_CLIP_PREFIX)
    if SDXL_OPEN_CLIP_PREFIX + "text_projection" not in second_out:
        raise ValueError(
            "SDXL's second text encoder has no text_projection.weight: it must be a "
            "CLIPTextModelWithProjection (its pooled, projected output conditions the UNet)"
        )
    scale_dtype = second_out[SDXL_OPEN_CLIP_PREFIX + "text_projection"].dtype
    second_out[SDXL_OPEN_CLIP_PREFIX + "logit_scale"] = _initial_logit_scale(scale_dtype)
    return {**convert_clip_to_ldm(first, prefix=SDXL_CLIP_PREFIX), **second_out}


def _initial_logit_scale(dtype: torch.dtype) -> Tensor:
    return torch.tensor(math.log(1 / 0.07), dtype=dtype)  # OpenCLIP's init


def _pad_open_clip(out: dict[str, Tensor], full_depth: int | None) -> None:
    depth = 1 + max(int(k.split(".")[2]) for k in out if k.startswith("transformer.resblocks."))
    if full_depth is None:
        full_depth = depth + 1 if depth == SD2_DIFFUSERS_TEXT_LAYERS else depth
    if full_depth <= depth:
        return
    last = f"transformer.resblocks.{depth - 1}."
    block = {k[len(last) :]: v for k, v in out.items() if k.startswith(last)}
    for index in range(depth, full_depth):
        out.update({f"transformer.resblocks.{index}.{k}": v.clone() for k, v in block.items()})
    width = out["ln_final.weight"].shape[0]
    dtype = out["ln_final.weight"].dtype
    out["text_projection"] = torch.eye(width, dtype=dtype)  # unused by SD 2.x (penultimate)
    out["logit_scale"] = _initial_logit_scale(dtype)


def _replace_prefix(text: str, table: Mapping[str, str]) -> str:
    for old, new in table.items():
        if text.startswith(old):
            return new + text[len(old) :]
    return text
