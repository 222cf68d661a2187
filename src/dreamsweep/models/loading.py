"""Load the base model of a run, and fingerprint it for the shared cache.

`model=tiny` (`tiny_xl`) builds the embedded model; `sd15`/`sd21`/`sdxl` load real weights from
`model.path`: a local diffusers folder, a single .safetensors/.ckpt file, or a hub id (with
HF_HUB_OFFLINE=1 only the local Hugging Face cache is used). The model family comes from what is
loaded (model_index.json's pipeline class; a single file's keys), and the family loads it.
Every part comes back in float32 in train mode with gradients on, like the tiny model; training
decides what to freeze.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DiffusionPipeline

from dreamsweep.config import ModelConfig
from dreamsweep.config_checks import BUILT_IN_MODELS
from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import FAMILIES, Family, family_of_pipeline
from dreamsweep.models.tiny import build_tiny, build_tiny_xl
from dreamsweep.preflight import SINGLE_FILE_SUFFIXES, looks_local


class ModelLoadError(ValueError):
    """model.path cannot be loaded; the message says what was tried and what to do."""


def saved_model(path: str | Path, name: str = "saved") -> ModelConfig:
    """The settings that load a saved pipeline folder or file as it is (no revision/variant)."""
    return ModelConfig(
        name=name,
        path=str(path),
        revision=None,
        variant=None,
        vae_path=None,
        seed=0,
        sample_size=0,
    )


BUILT_IN = dict(zip(BUILT_IN_MODELS, (build_tiny, build_tiny_xl), strict=True))
SDXL_SINGLE_FILE_KEY = "conditioner.embedders.1."  # the OpenCLIP-G encoder of SDXL's layout


def load_components(model: ModelConfig) -> SDComponents:
    if model.name in BUILT_IN and not model.path:
        return BUILT_IN[model.name](seed=model.seed, sample_size=model.sample_size)
    source = str(model.path)
    local = Path(source).expanduser()
    try:
        if local.is_file() and local.suffix in SINGLE_FILE_SUFFIXES:
            components = _single_file_family(local).from_single_file(local, _hub_offline())
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
    if model.vae_path:
        components.vae = _vae(model.vae_path)
    for module in components.modules():
        if module.dtype != torch.float32:
            module.to(torch.float32)
        module.train().requires_grad_(True)
    return components


def _vae(source: str) -> AutoencoderKL:
    """model.vae_path: a diffusers VAE folder (or hub id), e.g. SDXL's fp16-fix VAE."""
    local = Path(source).expanduser()
    try:
        return AutoencoderKL.from_pretrained(
            str(local) if local.exists() else source,
            local_files_only=local.exists() or _hub_offline(),
        )
    except (OSError, ValueError) as err:
        raise ModelLoadError(
            f"could not load model.vae_path={source}: {str(err).splitlines()[0]}. Give a "
            "diffusers VAE folder (config.json + diffusion_pytorch_model.safetensors) or a hub id"
        ) from None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _from_pretrained(source: str, model: ModelConfig, *, local_files_only: bool) -> SDComponents:
    common = dict(revision=model.revision, local_files_only=local_files_only)
    weights = dict(common, variant=model.variant)
    index = DiffusionPipeline.load_config(source, **common)
    family = family_of_pipeline(index.get("_class_name", ""), f"model.path={source}")
    return family.from_pretrained(source, weights, common)


def _single_file_family(path: Path) -> Family:
    """SDXL when a .safetensors file holds SDXL's second text encoder, else SD 1.x/2.x (a
    pickled .ckpt is not opened to look: SDXL ships as safetensors)."""
    keys: list[str] = []
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    xl = any(k.startswith(SDXL_SINGLE_FILE_KEY) for k in keys)
    return FAMILIES["sdxl" if xl else "sd"]


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
    texts = [m for m in (c.text_encoder, c.text_encoder_2) if m is not None]
    configs = [c.unet.config, c.vae.config, *(m.config for m in texts[:1])]
    configs += [c.noise_scheduler.config, *(m.config for m in texts[1:])]
    for config in configs:
        h.update(_config_json(config).encode())
    for tokenizer in (c.tokenizer, c.tokenizer_2):
        if tokenizer is not None:
            h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    if c.family != "sd":  # SD's fingerprints stay what they were (its cache entries with them)
        h.update(f"family:{c.family}:{c.force_zeros_for_empty_prompt}".encode())
    for module in c.modules():
        for name, tensor in sorted(module.state_dict().items()):
            data = tensor.detach().to("cpu", torch.float32).contiguous()
            h.update(f"{name}:{tuple(data.shape)}".encode())
            h.update(data.numpy().tobytes())
    return h.hexdigest()
