"""LoRA adapters (Hu et al. 2021, arXiv:2106.09685) on a frozen base, through peft, saved in
diffusers' LoRA format so that `from_pretrained(base)` + `load_lora_weights(folder)` loads them.

The adapters' configs go into the file's metadata (diffusers' `*_lora_adapter_metadata`):
without them diffusers reloads a LoRA at alpha = rank, i.e. at the wrong strength whenever
alpha was set (or swept) to something else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

from dreamsweep.config import MethodConfig, RunConfig
from dreamsweep.models.components import SDComponents

LORA_FILE = "pytorch_lora_weights.safetensors"
BASE_FILE = "base_model.json"  # where the frozen base the LoRA goes on lives
# Module names (peft's suffix match) of each target group, per model.
UNET_TARGETS = {
    "attention": ["to_q", "to_k", "to_v", "to_out.0"],
    "feed_forward": ["ff.net.0.proj", "ff.net.2"],
    "conv": ["conv1", "conv2", "conv_shortcut"],
}
TEXT_TARGETS = {
    "attention": ["q_proj", "k_proj", "v_proj", "out_proj"],
    "feed_forward": ["fc1", "fc2"],
}


def lora_config(method: MethodConfig, groups: dict[str, list[str]]) -> LoraConfig:
    targets = sorted({m for t in method.targets for m in groups.get(t, [])})
    return LoraConfig(
        r=method.rank,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout or 0.0,
        target_modules=targets,
        init_lora_weights="gaussian",  # A random, B zero: training starts at the base model
    )


def is_lora(cfg: RunConfig) -> bool:
    return cfg.method.name == "lora"


def add_adapters(cfg: RunConfig, c: SDComponents) -> None:
    """Freeze the base and add the adapters (the text encoder's only when it is trained);
    only the adapters' parameters then require grad."""
    c.unet.requires_grad_(False)
    c.unet.add_adapter(lora_config(cfg.method, UNET_TARGETS))
    c.text_encoder.requires_grad_(False)
    if cfg.train.text_encoder:  # transformers' add_adapter wants a newer peft; same layers
        inject_adapter_in_model(lora_config(cfg.method, TEXT_TARGETS), c.text_encoder)


def save_lora(cfg: RunConfig, c: SDComponents, folder: Path, base: str, scheduler=None) -> None:
    """The adapters in diffusers' format, their configs in the metadata, plus `base_model.json`
    (the base's location and the scheduler to sample with) into ``folder`` (made by the caller,
    e.g. a temporary folder that is swapped in)."""
    from diffusers import StableDiffusionPipeline

    text = cfg.train.text_encoder
    StableDiffusionPipeline.save_lora_weights(  # peft's key names (lora_A/lora_B), as now saved
        str(folder),
        unet_lora_layers=get_peft_model_state_dict(c.unet),
        text_encoder_lora_layers=get_peft_model_state_dict(c.text_encoder) if text else None,
        unet_lora_adapter_metadata=lora_config(cfg.method, UNET_TARGETS).to_dict(),
        text_encoder_lora_adapter_metadata=(
            lora_config(cfg.method, TEXT_TARGETS).to_dict() if text else None
        ),
        safe_serialization=True,
    )
    info: dict[str, Any] = {"base": base}
    if scheduler is not None:
        info["scheduler"] = scheduler.config
    (folder / BASE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")


def is_lora_folder(folder: Path) -> bool:
    return (folder / LORA_FILE).exists() and (folder / BASE_FILE).exists()


def lora_base(folder: Path) -> str:
    """The base a LoRA folder goes on: a path (relative ones are relative to the folder) or
    a hub id."""
    base = json.loads((folder / BASE_FILE).read_text())["base"]
    local = (folder / base).resolve() if not Path(base).is_absolute() else Path(base)
    return str(local) if local.exists() else base


def load_lora_components(folder: Path) -> SDComponents:
    """What a user does: the base pipeline, then `load_lora_weights(folder)`; the adapters are
    then fused into the weights (what a merged checkpoint, e.g. a single file, holds)."""
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.models.pipeline import assemble_pipeline

    components = load_components(saved_model(lora_base(folder)))
    pipe = assemble_pipeline(components)  # shares these modules
    pipe.load_lora_weights(str(folder))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    return components
