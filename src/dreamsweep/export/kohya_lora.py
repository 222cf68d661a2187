"""A diffusers/peft LoRA in the kohya layout that A1111, ComfyUI and diffusers all load.

kohya sd-scripts (`networks/lora.py`, `LoRANetwork.create_modules`) names each LoRA module
`lora_unet_` / `lora_te_` + the module's path with dots turned into underscores. For SD 1.x/2.x
it trains on a UNet with diffusers' module names (`library/original_unet.py`), so the names read
`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q`, and on transformers'
CLIPTextModel, so `lora_te_text_model_encoder_layers_0_self_attn_q_proj`. Each module stores
`.lora_down.weight` (peft `lora_A`), `.lora_up.weight` (`lora_B`) and `.alpha`; the loaders scale
the update by `alpha / rank` (rank = rows of `lora_down`), as peft does by `lora_alpha / r`.

SDXL is different (`networks/lora.py` `LORA_PREFIX_TEXT_ENCODER1/2`, and diffusers'
`lora_conversion_utils._convert_unet_lora_key`: "kohya-ss trains SDXL on its own sgm/LDM UNet",
`library/sdxl_original_unet.py`): UNet modules carry their LDM names
(`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q`, `lora_unet_middle_block_1_...`,
`lora_unet_output_blocks_0_1_...`), CLIP-L is `lora_te1_text_model_...` and the second encoder
`lora_te2_text_model_...`, both in transformers' names. A1111 (`extensions-builtin/Lora/
networks.py`) finds those UNet modules by replacing `lora_unet` with `diffusion_model`, and
ComfyUI (`comfy/lora.py` `model_lora_keys_unet`) maps `lora_unet_<LDM key>` directly.

Writing the TRUE alpha matters: diffusers' own writer
(`diffusers.utils.state_dict_utils.convert_state_dict_to_kohya`) stores alpha = rank
(`torch.tensor(len(weight))`), which silently changes the strength of every LoRA trained with
alpha != rank, and names the SD 1.x text encoder `lora_te1_` (kohya's SDXL prefix).

Known limit of the reader, not of the file: diffusers 0.42.1 `load_lora_weights` honours one
alpha for all attention modules of a kohya file (the most common one); per-module alphas are read
correctly by A1111 and ComfyUI, which scale each module by its own `.alpha`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from peft.utils.other import get_pattern_key
from safetensors import safe_open

from dreamsweep.export.family import Family
from dreamsweep.export.metadata import WrittenFile, write_safetensors
from dreamsweep.export.single_file import ldm_unet_key, unet_prefix_map
from dreamsweep.models.portable import with_text_root

Tensor = torch.Tensor
UNET = "unet"
TEXT_ENCODER = "text_encoder"
TEXT_ENCODER_2 = "text_encoder_2"  # SDXL's second text encoder
COMPONENTS = (UNET, TEXT_ENCODER, TEXT_ENCODER_2)
_KOHYA_PREFIX = {UNET: "lora_unet_", TEXT_ENCODER: "lora_te_"}
_SDXL_KOHYA_PREFIX = {UNET: "lora_unet_", TEXT_ENCODER: "lora_te1_", TEXT_ENCODER_2: "lora_te2_"}
Namer = Callable[[str], str]  # `unet.<module>` -> kohya module name
_PEFT_SUFFIX = {".lora_A.weight": "lora_down.weight", ".lora_B.weight": "lora_up.weight"}


def kohya_alpha(lora_alpha: float, rank: int, use_rslora: bool = False) -> float:
    """The alpha to store so that kohya's scale `alpha / rank` equals peft's scale:
    `lora_alpha / rank`, or `lora_alpha / sqrt(rank)` with rsLoRA."""
    return lora_alpha * math.sqrt(rank) if use_rslora else float(lora_alpha)


def peft_module_alphas(
    model: torch.nn.Module, prefix: str, adapter_name: str = "default"
) -> dict[str, float]:
    """`{prefix.module: kohya alpha}` for every peft LoRA layer of `model` (the run's
    `lora_alpha`, per module, as peft applied it). Names match `get_peft_model_state_dict`."""
    alphas = {}
    for name, module in model.named_modules():
        lora_alpha = getattr(module, "lora_alpha", None)
        if isinstance(lora_alpha, dict) and adapter_name in lora_alpha:
            rslora = getattr(module, "use_rslora", {}).get(adapter_name, False)
            rank = module.r[adapter_name]
            alphas[f"{prefix}.{name}"] = kohya_alpha(lora_alpha[adapter_name], rank, rslora)
    return alphas


def config_module_alphas(
    config: Mapping[str, Any], module_names: Iterable[str], prefix: str
) -> dict[str, float]:
    """`{prefix.module: kohya alpha}` from a LoraConfig as a dict (`LoraConfig.to_dict()`, or
    the part of diffusers' `lora_adapter_metadata` for one component), resolving
    `alpha_pattern` / `rank_pattern` as peft does (`peft.utils.other.get_pattern_key`)."""
    alpha_pattern = config.get("alpha_pattern") or {}
    rank_pattern = config.get("rank_pattern") or {}
    alphas = {}
    for name in module_names:
        rank = rank_pattern.get(get_pattern_key(rank_pattern.keys(), name), config["r"])
        alpha = alpha_pattern.get(get_pattern_key(alpha_pattern.keys(), name), config["lora_alpha"])
        alphas[f"{prefix}.{name}"] = kohya_alpha(alpha, rank, bool(config.get("use_rslora")))
    return alphas


def read_diffusers_lora(path: str | Path) -> tuple[dict[str, Tensor], dict[str, float]]:
    """The state dict and per-module kohya alphas of a `pytorch_lora_weights.safetensors`.

    The alphas come from the `lora_adapter_metadata` header diffusers writes when
    `save_lora_weights(..., unet_lora_adapter_metadata=LoraConfig.to_dict(), ...)` is given the
    configs; a file saved without it has lost its alpha, which is an error here.
    """
    with safe_open(str(path), framework="pt") as handle:
        state_dict = {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118
        header = (handle.metadata() or {}).get("lora_adapter_metadata")
    if header is None:
        raise ValueError(f"{path} has no lora_adapter_metadata: its LoRA alpha is unknown")
    config = json.loads(header)
    alphas: dict[str, float] = {}
    for prefix in COMPONENTS:
        names = {
            _split_peft_key(k)[0][len(prefix) + 1 :]
            for k in state_dict
            if k.startswith(f"{prefix}.")
        }
        part = {k[len(prefix) + 1 :]: v for k, v in config.items() if k.startswith(f"{prefix}.")}
        if names:
            alphas.update(config_module_alphas(part, names, prefix))
    return state_dict, alphas


def kohya_module_name(module: str) -> str:
    """`unet.down_blocks.0...to_q` -> `lora_unet_down_blocks_0_..._to_q`; text encoder paths get
    the `text_model.` root kohya and A1111 expect (transformers >= 5.6 dropped it)."""
    component, _, path = module.partition(".")
    if component not in _KOHYA_PREFIX:
        raise ValueError(f"LoRA module {module!r} is neither unet.* nor text_encoder.*")
    if component == TEXT_ENCODER:
        path = with_text_root(path)
    return _KOHYA_PREFIX[component] + path.replace(".", "_")


def kohya_namer(family: Family, unet_config: Mapping[str, Any] | None = None) -> Namer:
    """The kohya module-name function of a model family (SDXL's needs the UNet config)."""
    if family == "sd":
        return kohya_module_name
    if family == "sdxl":
        if unet_config is None:
            raise ValueError("SDXL kohya names need the UNet config (its LDM block table)")
        prefixes = unet_prefix_map(unet_config)
        return lambda module: _sdxl_name(module, prefixes)
    raise ValueError(f"no kohya LoRA layout for model family {family!r}")


def _sdxl_name(module: str, prefixes: Mapping[str, str]) -> str:
    """`unet.down_blocks.1.attentions.0...to_q` -> `lora_unet_input_blocks_4_1_..._to_q` (the
    module's LDM name, as kohya's SDXL UNet names it); `text_encoder.` / `text_encoder_2.`
    paths -> `lora_te1_text_model_...` / `lora_te2_text_model_...`."""
    component, _, path = module.partition(".")
    if component not in _SDXL_KOHYA_PREFIX:
        raise ValueError(f"LoRA module {module!r} is not unet.*, text_encoder(_2).*")
    if component == UNET:
        path = ldm_unet_key(f"{path}.weight", prefixes).removesuffix(".weight")
    else:
        path = with_text_root(path)
    return _SDXL_KOHYA_PREFIX[component] + path.replace(".", "_")


def _split_peft_key(key: str) -> tuple[str, str]:
    for suffix, kohya in _PEFT_SUFFIX.items():
        if key.endswith(suffix):
            return key[: -len(suffix)], kohya
    raise ValueError(f"not a plain LoRA weight (lora_A/lora_B): {key!r}")


def diffusers_lora_to_kohya(
    state_dict: Mapping[str, Tensor],
    alphas: float | Mapping[str, float],
    dtype: torch.dtype | None = None,
    name: Namer = kohya_module_name,
) -> dict[str, Tensor]:
    """The kohya state dict for a diffusers LoRA state dict (`unet.<module>.lora_A.weight`...).

    `alphas` is the kohya alpha (see :func:`kohya_alpha`) for all modules, or per module keyed
    `unet.<module>` / `text_encoder.<module>` as in `state_dict`; a module without one is an
    error rather than a silent alpha = rank. Alphas are scalars of `dtype` (float32 when none
    is given), as kohya's `save_weights` casts every tensor to the save precision. `name`
    gives each module its kohya name (:func:`kohya_namer`; SD 1.x/2.x by default).
    """
    out: dict[str, Tensor] = {}
    modules: dict[str, int] = {}
    for key, value in state_dict.items():
        module, kind = _split_peft_key(key)
        value = value.detach()
        out[f"{name(module)}.{kind}"] = (value.to(dtype) if dtype else value).contiguous()
        if kind == "lora_down.weight":
            modules[module] = value.shape[0]
    for module in modules:
        kohya = name(module)
        if f"{kohya}.lora_up.weight" not in out:
            raise ValueError(f"{module} has lora_A but no lora_B")
        alpha = alphas if isinstance(alphas, int | float) else alphas.get(module)
        if alpha is None:
            raise KeyError(f"no alpha given for LoRA module {module}")
        out[f"{kohya}.alpha"] = torch.tensor(float(alpha), dtype=dtype or torch.float32)
    return out


def write_kohya_lora(
    path: str | Path,
    state_dict: Mapping[str, Tensor],
    alphas: float | Mapping[str, float],
    *,
    dtype: torch.dtype | None = None,
    metadata: Mapping[str, str] | None = None,
    name: Namer = kohya_module_name,
) -> WrittenFile:
    """Write :func:`diffusers_lora_to_kohya` with `metadata` (and kohya's `sshs_*` hashes when
    `ss_*` keys are given). Name the file `<title>.safetensors`: A1111 and ComfyUI list LoRAs
    by file name in `models/Lora` / `models/loras`."""
    tensors = diffusers_lora_to_kohya(state_dict, alphas, dtype=dtype, name=name)
    return write_safetensors(path, tensors, metadata or {})


def prefixed(state_dict: Mapping[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """`get_peft_model_state_dict(model)` keys under `unet.` / `text_encoder.` /
    `text_encoder_2.`, as diffusers' `save_lora_weights` writes them."""
    return {f"{prefix}.{k}": v for k, v in state_dict.items()}
