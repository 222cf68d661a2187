"""Load the base model of a run, and fingerprint it for the shared cache.

`model=tiny` builds the embedded model; `sd15`/`sd21` load real weights from `model.path`: a
local diffusers folder, a single .safetensors/.ckpt file, or a hub id (with HF_HUB_OFFLINE=1
only the local Hugging Face cache is used). Every part comes back in float32 in train mode
with gradients on, like the tiny model; training decides what to freeze.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from dreamsweep.config import ModelConfig
from dreamsweep.models.components import SDComponents
from dreamsweep.models.tiny import build_tiny
from dreamsweep.preflight import SINGLE_FILE_SUFFIXES, looks_local


class ModelLoadError(ValueError):
    """model.path cannot be loaded; the message says what was tried and what to do."""


def saved_model(path: str | Path, name: str = "saved") -> ModelConfig:
    """The settings that load a saved pipeline folder or file as it is (no revision/variant)."""
    return ModelConfig(
        name=name, path=str(path), revision=None, variant=None, seed=0, sample_size=0
    )


def load_components(model: ModelConfig) -> SDComponents:
    if model.name == "tiny" and not model.path:
        return build_tiny(seed=model.seed, sample_size=model.sample_size)
    source = str(model.path)
    local = Path(source).expanduser()
    try:
        if local.is_file() and local.suffix in SINGLE_FILE_SUFFIXES:
            components = _from_single_file(local)
        elif local.is_dir():
            if not (local / "model_index.json").exists():
                raise ModelLoadError(
                    f"model.path={source} is a folder but not a diffusers model (no "
                    "model_index.json). Expected unet/, vae/, text_encoder/, tokenizer/, "
                    "scheduler/ as written by save_pretrained, or give a .safetensors file."
                )
            components = _from_pretrained(str(local), model, local_files_only=True)
        elif looks_local(source):
            raise ModelLoadError(f"model.path={source} does not exist")
        else:
            components = _from_pretrained(source, model, local_files_only=_hub_offline())
    except ModelLoadError:
        raise
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"could not load model.path={source}: {str(err).splitlines()[0]}. Give a local "
            "diffusers folder or a hub id already in the Hugging Face cache"
            + (" (HF_HUB_OFFLINE is set, so nothing is downloaded)" if _hub_offline() else "")
        ) from None
    for module in (components.unet, components.vae, components.text_encoder):
        if module.dtype != torch.float32:
            module.to(torch.float32)
        module.train().requires_grad_(True)
    return components


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _from_pretrained(source: str, model: ModelConfig, *, local_files_only: bool) -> SDComponents:
    common = dict(revision=model.revision, local_files_only=local_files_only)
    weights = dict(common, variant=model.variant)
    return SDComponents(
        unet=UNet2DConditionModel.from_pretrained(source, subfolder="unet", **weights),
        vae=AutoencoderKL.from_pretrained(source, subfolder="vae", **weights),
        text_encoder=CLIPTextModel.from_pretrained(source, subfolder="text_encoder", **weights),
        tokenizer=CLIPTokenizer.from_pretrained(source, subfolder="tokenizer", **common),
        # DDPM from the model's own scheduler config keeps prediction_type (v for SD 2.x 768).
        noise_scheduler=DDPMScheduler.from_pretrained(source, subfolder="scheduler", **common),
    )


def _from_single_file(path: Path) -> SDComponents:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_single_file(str(path), local_files_only=_hub_offline())
    return SDComponents(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
    )


VOLATILE_KEYS = {
    "_name_or_path",
    "_commit_hash",
    "transformers_version",
    "_diffusers_version",
    "_class_name",
    "_use_default_values",
    "architectures",
    "dtype",
    "torch_dtype",
}


def _config_json(config) -> str:
    data = config.to_dict() if hasattr(config, "to_dict") else dict(config)
    clean = {k: v for k, v in data.items() if k not in VOLATILE_KEYS}
    return json.dumps(clean, sort_keys=True, default=str)


def fingerprint(c: SDComponents) -> str:
    """sha256 of the configs and every weight: the cache key of work done with this model."""
    h = hashlib.sha256()
    for config in (c.unet.config, c.vae.config, c.text_encoder.config, c.noise_scheduler.config):
        h.update(_config_json(config).encode())
    h.update(json.dumps(sorted(c.tokenizer.get_vocab().items())).encode())
    for module in (c.unet, c.vae, c.text_encoder):
        for name, tensor in sorted(module.state_dict().items()):
            data = tensor.detach().to("cpu", torch.float32).contiguous()
            h.update(f"{name}:{tuple(data.shape)}".encode())
            h.update(data.numpy().tobytes())
    return h.hexdigest()
