"""Resumable training state (every N steps, keep K) and the final diffusers export.

A checkpoint is written to `checkpoints/step_<n>.tmp` and renamed to `step_<n>` when complete,
so a run killed while saving never resumes from half a checkpoint. The final pipeline is
written to `model.tmp` and renamed to `model`, with the resolved settings in the metadata of
every safetensors file.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors import safe_open
from safetensors.torch import save_file

from dreamsweep.models.components import SDComponents
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.runs import checkpoint_dirs
from dreamsweep.training.ema import ema_weights


def latest_step(root: Path) -> int:
    """The step of the newest complete checkpoint, 0 if there is none."""
    found = checkpoint_dirs(root)
    return found[-1][0] if found else 0


def save_checkpoint(accelerator: Accelerator, root: Path, step: int, keep: int) -> Path:
    """All ranks call this (Accelerate saves per-rank state); the main rank publishes it."""
    final = root / f"step_{step:06d}"
    tmp = root / f"step_{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for _, old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resume_latest(accelerator: Accelerator, root: Path) -> int:
    """Load the newest complete checkpoint; return its step (0 when starting fresh)."""
    if accelerator.is_main_process and root.exists():
        for stale in root.glob("step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    found = checkpoint_dirs(root)
    if not found:
        return 0
    step, path = found[-1]
    accelerator.load_state(str(path))
    return step


def export_pipeline(
    components: SDComponents, out_dir: Path, settings: dict[str, Any], ema: EMAModel | None = None
) -> Path:
    """Write a `from_pretrained`-loadable pipeline atomically, settings in the metadata.

    With EMA, the pipeline's UNet holds the EMA weights and the raw ones go to `unet_raw/`
    (ignored by `from_pretrained`, loadable with `UNet2DConditionModel.from_pretrained`).
    """
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if ema is None:
        assemble_pipeline(components).save_pretrained(str(tmp), safe_serialization=True)
    else:
        components.unet.save_pretrained(str(tmp / "unet_raw"), safe_serialization=True)
        with ema_weights(ema, components.unet):
            assemble_pipeline(components).save_pretrained(str(tmp), safe_serialization=True)
    stamp_metadata(tmp, settings)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


def stamp_metadata(folder: Path, settings: dict[str, Any]) -> None:
    """Add `dreamsweep_config` (JSON) to every safetensors file under ``folder``."""
    extra = {"format": "pt", "dreamsweep_config": json.dumps(settings, sort_keys=True)}
    for file in folder.rglob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            metadata = {**(f.metadata() or {}), **extra}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
        save_file(tensors, str(file), metadata=metadata)


def read_settings(weights_file: Path) -> dict[str, Any]:
    """The training settings stamped into an exported safetensors file."""
    with safe_open(str(weights_file), framework="pt") as f:
        return json.loads((f.metadata() or {})["dreamsweep_config"])
