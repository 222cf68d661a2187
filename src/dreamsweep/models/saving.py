"""The one place that writes weights as users load them, atomically: a diffusers pipeline
folder (full fine-tune) or a LoRA folder (adapters + the base's location), with the run's
settings stamped into every safetensors file's metadata. Every safetensors file is rewritten
through `tensor_files.save_tensors` (the shared mode) with the text encoder's keys in the layout
transformers 4.x and 5.x both read (`models/text_keys.py`).

A folder is built beside its place and swapped in (`atomic.new_folder`), so the previous one
stays whole until the new one is complete (a kill or a full disk loses nothing).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diffusers.training_utils import EMAModel
from safetensors import safe_open

from dreamsweep.atomic import new_folder
from dreamsweep.config import ASSET_PREFIX, RunConfig, portable_location
from dreamsweep.models.components import SDComponents
from dreamsweep.models.embedding_files import add_pivotal_embedding, save_run_embedding
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.models.portable import make_portable
from dreamsweep.training.ema import ema_weights
from dreamsweep.training.embeddings import averaged_module, embedding_only
from dreamsweep.training.lora import is_lora, save_lora

LORA_BASE_IN_RUN = "base_model"  # a LoRA run on a model without a path saves its base here


def base_location(cfg: RunConfig, depth: int = 1) -> str:
    """Where a LoRA's frozen base is: the model's path or hub id (a model shipped in the
    package as `asset:<name>`, wherever it is installed), else the run's saved copy (relative
    to the LoRA folder ``depth`` levels below the run, e.g. `<run>/best`, `<run>/model/raw`,
    so the run folder can move)."""
    if not cfg.model.path:
        return "../" * depth + LORA_BASE_IN_RUN
    shipped = portable_location(cfg.model.path)
    return shipped if shipped.startswith(ASSET_PREFIX) else str(cfg.model.path)


def save_base_for_lora(cfg: RunConfig, base: SDComponents, run_dir: Path) -> None:
    """A LoRA on a model built in code (tiny) needs its base on disk to be loaded back:
    the base pipeline is saved once into the run folder, before any training."""
    folder = run_dir / LORA_BASE_IN_RUN
    on_base = is_lora(cfg) or embedding_only(cfg)
    if on_base and not cfg.model.path and not folder.exists():
        save_pipeline(base, folder, {})


def save_weights(
    cfg: RunConfig,
    components: SDComponents,
    out_dir: Path,
    settings: dict[str, Any],
    scheduler=None,
    extra: dict[str, str] | None = None,
    base: str | None = None,
) -> Path:
    """The weights the components hold now, as the run's method saves them; ``base``: where a
    LoRA's base is, seen from ``out_dir`` (default: `base_location`)."""
    if embedding_only(cfg):
        base = base or base_location(cfg)
        return write_folder(
            out_dir,
            lambda tmp: save_run_embedding(cfg, components, tmp, base, scheduler),
            settings,
            extra,
        )
    if is_lora(cfg):
        base = base or base_location(cfg)

        def fill_lora(tmp: Path) -> None:
            save_lora(cfg, components, tmp, base, scheduler)
            add_pivotal_embedding(cfg, components, tmp)

        return write_folder(out_dir, fill_lora, settings, extra)

    def fill(tmp: Path) -> None:
        _save_pipeline_files(components, tmp, scheduler)
        add_pivotal_embedding(cfg, components, tmp)

    return write_folder(out_dir, fill, settings, extra)


def export_final(
    cfg: RunConfig,
    components: SDComponents,
    out_dir: Path,
    settings: dict[str, Any],
    ema: EMAModel | None = None,
) -> Path:
    """The final weights. With EMA, the folder holds the EMA weights and the raw ones go to
    `unet_raw/` (a pipeline: loadable with `UNet2DConditionModel.from_pretrained`) or `raw/`
    (a LoRA folder of its own)."""
    if ema is None:
        return save_weights(cfg, components, out_dir, settings)
    raw = out_dir.with_name(out_dir.name + ".raw.tmp")
    shutil.rmtree(raw, ignore_errors=True)
    try:
        if embedding_only(cfg):
            raw.mkdir(parents=True)
            save_run_embedding(cfg, components, raw, base_location(cfg, depth=2))
            name = "raw"
        elif is_lora(cfg):
            raw.mkdir(parents=True)
            save_lora(cfg, components, raw, base_location(cfg, depth=2))
            add_pivotal_embedding(cfg, components, raw)
            name = "raw"
        else:
            components.unet.save_pretrained(str(raw), safe_serialization=True)
            name = "unet_raw"

        def fill(tmp: Path) -> None:  # the EMA weights, then the raw ones moved in beside them
            if embedding_only(cfg):
                save_run_embedding(cfg, components, tmp, base_location(cfg))
            elif is_lora(cfg):
                save_lora(cfg, components, tmp, base_location(cfg))
            else:
                _save_pipeline_files(components, tmp)
            add_pivotal_embedding(cfg, components, tmp)
            raw.rename(tmp / name)

        with ema_weights(ema, averaged_module(cfg, components)):
            return write_folder(out_dir, fill, settings)
    finally:
        shutil.rmtree(raw, ignore_errors=True)


def save_pipeline(
    components: SDComponents,
    out_dir: Path,
    settings: dict[str, Any],
    scheduler=None,
    extra: dict[str, str] | None = None,
) -> Path:
    """A `from_pretrained`-loadable pipeline; ``scheduler`` becomes its scheduler."""
    return write_folder(
        out_dir, lambda tmp: _save_pipeline_files(components, tmp, scheduler), settings, extra
    )


def _save_pipeline_files(components: SDComponents, folder: Path, scheduler=None) -> None:
    assemble_pipeline(components, scheduler).save_pretrained(str(folder), safe_serialization=True)


def write_folder(
    out_dir: Path,
    fill: Callable[[Path], Any],
    settings: dict[str, Any],
    extra: dict[str, str] | None = None,
) -> Path:
    """Fill a staging folder, stamp the settings, add ``extra`` text files, swap it in (a full
    disk leaves no half-written folder behind)."""
    with new_folder(out_dir) as tmp:
        fill(tmp)
        stamp_metadata(tmp, settings)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out_dir


def stamp_metadata(folder: Path, settings: dict[str, Any]) -> None:
    """Add `dreamsweep_config` (JSON) to every safetensors file under ``folder``, rewritten
    portable (`models/portable.py`: the shared mode, keys and tokenizer files every stack
    reads)."""
    extra = {"format": "pt", "dreamsweep_config": json.dumps(settings, sort_keys=True)}
    make_portable(folder, extra)


def read_settings(weights_file: Path) -> dict[str, Any]:
    """The training settings stamped into an exported safetensors file."""
    with safe_open(str(weights_file), framework="pt") as f:
        return json.loads((f.metadata() or {})["dreamsweep_config"])
