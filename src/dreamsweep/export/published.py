"""What an export says about itself, from the run's real settings: kohya's `ss_*` training keys,
ModelSpec's descriptive keys, the license, the thumbnail, and how the base model is named.

Key names follow kohya sd-scripts (`train_network.py`, the `metadata = {"ss_...": ...}` block
and `ss_steps` / `ss_sd_model_name` at save time) and ModelSpec 1.0.1 (README, "Specification":
`description`, `author`, `usage_hint`, `license`, `thumbnail` "in data-image format", 256x256
recommended, `merged_from`, `implementation_version`). Nothing here names a path on this
machine (see `config.portable_location`).
"""

from __future__ import annotations

import base64
from io import BytesIO
from pathlib import Path
from typing import Any

from dreamsweep.choices import OPTIMIZERS
from dreamsweep.config import ASSET_PREFIX, portable_location
from dreamsweep.data.prompt_text import fill_prompt
from dreamsweep.export.card import Base, py_str
from dreamsweep.export.choose import Chosen

# The license a fine-tune inherits from its base, by model config name (--license overrides).
LICENSES = {
    "sd15": "creativeml-openrail-m",
    "sd21": "openrail++",
    "sdxl": "openrail++",  # SDXL 1.0 base: CreativeML Open RAIL++-M
    "toyworld": "apache-2.0",  # shipped with DreamSweep (Apache-2.0)
    "toyworld_xl": "apache-2.0",
    "tiny": "apache-2.0",  # built in code by DreamSweep
    "tiny_xl": "apache-2.0",
}
DEFAULT_AUTHOR = "DreamSweep"
MIN_DIFFUSERS = "0.30.0"  # the oldest diffusers that reads the LoRA files (pyproject, compat test)
THUMBNAIL_PX = 256


def license_of(chosen: Chosen, given: str | None = None) -> str:
    return given or LICENSES.get(chosen.run.settings.model.name, "other")


def base_of(chosen: Chosen) -> Base:
    """How the card names and loads the base: a hub id as it is, a model shipped in the package
    through `asset_path`, a model built in code from the export's `base_model/` copy, and a
    local model by its folder name (the user gives their copy's path)."""
    model = chosen.run.settings.model
    name, path = model.name, model.path
    if not path:
        return Base(name, None, py_str("base_model"), f"{name} (built in code; in base_model/)")
    where = portable_location(path)
    if where.startswith(ASSET_PREFIX):
        asset = where[len(ASSET_PREFIX) :]
        return Base(
            name,
            None,
            f"asset_path({py_str(asset)})",
            f"{name} (shipped with DreamSweep)",
            ("from dreamsweep.config import asset_path",),
        )
    if where == path:  # not a path on this machine: a hub id
        return Base(where, where, py_str(where))
    note = f"Replace {where} below by the path of your copy of the base model (a diffusers folder)."
    return Base(where, None, py_str(where), note=note)


def thumbnail(grid: Path | None) -> str | None:
    """The sample grid as a small JPEG data URI (ModelSpec `thumbnail`)."""
    if grid is None or not grid.exists():
        return None
    from PIL import Image

    image = Image.open(grid).convert("RGB")
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def trigger(chosen: Chosen) -> str:
    data = chosen.run.settings.data
    return fill_prompt("{token} {class}", data.token, data.class_name)


def spec_keys(
    chosen: Chosen, *, author: str, license: str, grid: Path | None, usage: str, **more: Any
) -> dict[str, str | None]:
    """ModelSpec's descriptive keys for `metadata.modelspec_metadata(**...)`."""
    row = chosen.row
    description = (
        f"DreamBooth fine-tune of {base_of(chosen).name} on '{trigger(chosen)}', trained with "
        f"DreamSweep: the best cell of run {chosen.run.name} (step {row.step}, {row.cell}, "
        f"objective {row.objective:.4f}). Sample with {row.scheduler}, "
        f"{row.num_inference_steps} steps, guidance {row.guidance_scale:g}."
    )
    return {
        "description": description,
        "author": author,
        "usage_hint": usage,
        "license": license,
        "thumbnail": thumbnail(grid),
        **more,
    }


def training_keys(chosen: Chosen, output_name: str) -> dict[str, Any]:
    """kohya's `ss_*` keys (without the prefix) from the run's settings and result.json, for
    `metadata.kohya_lora_metadata(**...)`; a key the run cannot tell is left out."""
    run = chosen.run
    cfg, result = run.settings, run.result
    data = result.get("data") or {}
    optim, train = cfg.optim, cfg.train
    optimizer_args = {
        "weight_decay": optim.weight_decay,
        "betas": (optim.beta1, optim.beta2),
        "eps": optim.eps,
    }
    text_lr = (train.text_encoder_lr or optim.lr) if train.text_encoder else 0.0
    return {
        "network_dim": int(cfg.method.rank),
        "network_alpha": float(cfg.method.alpha),
        "network_dropout": cfg.method.dropout,
        "num_train_images": data.get("instance_images"),
        "num_reg_images": data.get("class_images"),
        "resolution": cfg.data.resolution,
        "learning_rate": float(optim.lr),
        "unet_lr": float(optim.lr),
        "text_encoder_lr": float(text_lr),
        "max_train_steps": train.max_steps,
        "steps": int(chosen.row.step),
        "output_name": output_name,
        "seed": train.seed,
        "optimizer": (OPTIMIZERS[optim.name].kohya_class or optim.name)
        + "("
        + ",".join(f"{k}={v}" for k, v in optimizer_args.items())
        + ")",
        "lr_scheduler": optim.lr_scheduler,
        "lr_warmup_steps": optim.warmup_steps,
        "max_grad_norm": optim.max_grad_norm,
        "gradient_accumulation_steps": train.grad_accum,
        "gradient_checkpointing": train.gradient_checkpointing,
        "mixed_precision": cfg.launcher.mixed_precision,
        "noise_offset": train.noise_offset if train.noise == "offset" else None,
        "multires_noise_iterations": train.multires_iterations
        if train.noise == "multires"
        else None,
        "multires_noise_discount": train.multires_discount if train.noise == "multires" else None,
        "min_snr_gamma": train.snr_gamma,
        "prior_loss_weight": float(cfg.prior.weight),
        "sd_model_name": base_of(chosen).hub_id or _model_name(chosen),
        "training_started_at": result.get("training_started_at"),
    }


def _model_name(chosen: Chosen) -> str:
    model = chosen.run.settings.model
    return portable_location(model.path) if model.path else model.name
