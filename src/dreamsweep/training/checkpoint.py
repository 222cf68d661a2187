"""Resumable training state (every N steps, keep K) and the final diffusers export.

A checkpoint is written to `checkpoints/step_<n>.tmp` and renamed to `step_<n>` when complete,
so a run killed while saving never resumes from half a checkpoint. The final pipeline is
written to `model.tmp` and renamed to `model`, with the resolved settings in the metadata of
every safetensors file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors import safe_open
from safetensors.torch import save_file

from dreamsweep.models.components import SDComponents
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.runs import checkpoint_dirs
from dreamsweep.training.ema import ema_weights, load_ema, save_ema

# Accelerate loads every file of a checkpoint with torch's weights-only loader except these,
# which it unpickles in full (they would run code); DreamSweep never writes them.
UNPICKLED_BY_ACCELERATE = "custom_checkpoint_*"


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint folder holds a file that loading could execute."""


def latest_step(root: Path) -> int:
    """The step of the newest complete checkpoint, 0 if there is none."""
    found = checkpoint_dirs(root)
    return found[-1][0] if found else 0


def save_checkpoint(
    accelerator: Accelerator, root: Path, step: int, keep: int, ema: EMAModel | None = None
) -> Path:
    """All ranks call this (Accelerate saves per-rank state); the main rank publishes it."""
    final = root / f"step_{step:06d}"
    tmp = root / f"step_{step:06d}.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if ema is not None:
                save_ema(ema, tmp)
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
    except BaseException:  # a full disk: no partial checkpoint left, the previous one stays
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        for _, old in checkpoint_dirs(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def resume_latest(accelerator: Accelerator, root: Path, ema: EMAModel | None = None) -> int:
    """Load the newest complete checkpoint; return its step (0 when starting fresh). Only
    tensors and JSON are read: Accelerate loads its files with torch's weights-only loader,
    the EMA comes from safetensors, and no pickled object of the folder is ever loaded."""
    if accelerator.is_main_process and root.exists():
        for stale in root.glob("step_*.tmp"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    found = checkpoint_dirs(root)
    if not found:
        return 0
    step, path = found[-1]
    if foreign := [p.name for p in path.glob(UNPICKLED_BY_ACCELERATE)]:
        raise UnsafeCheckpoint(
            f"refusing to resume from {path}: {', '.join(sorted(foreign))} was not written by "
            "DreamSweep (its checkpoints hold only tensors and JSON; a pickle can run code); "
            "delete the file (or the whole checkpoint, to resume from an earlier one)"
        )
    accelerator.load_state(str(path))
    if ema is not None:
        load_ema(ema, path)
        ema.to(accelerator.device)
    return step


def export_pipeline(
    components: SDComponents, out_dir: Path, settings: dict[str, Any], ema: EMAModel | None = None
) -> Path:
    """The final weights as a `from_pretrained`-loadable pipeline, settings in the metadata.

    With EMA, the pipeline's UNet holds the EMA weights and the raw ones go to `unet_raw/`
    (ignored by `from_pretrained`, loadable with `UNet2DConditionModel.from_pretrained`).
    """
    if ema is None:
        return save_pipeline(components, out_dir, settings)
    raw = out_dir.with_name(out_dir.name + ".raw.tmp")
    try:
        components.unet.save_pretrained(str(raw), safe_serialization=True)
        with ema_weights(ema, components.unet):
            return save_pipeline(
                components, out_dir, settings, also=lambda folder: raw.rename(folder / "unet_raw")
            )
    finally:
        shutil.rmtree(raw, ignore_errors=True)


def save_pipeline(
    components: SDComponents,
    out_dir: Path,
    settings: dict[str, Any],
    scheduler=None,
    extra: dict[str, str] | None = None,
    also: Callable[[Path], None] | None = None,
) -> Path:
    """Write a pipeline folder atomically: into `<out>.tmp`, then swapped in, so the previous
    folder stays whole until the new one is complete (a kill or a full disk loses nothing).
    ``scheduler``: the pipeline's own; ``also``: adds files to the new folder before the
    settings are stamped into its safetensors; ``extra``: small text files (name -> text)."""
    tmp, old = out_dir.with_name(out_dir.name + ".tmp"), out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        assemble_pipeline(components, scheduler).save_pretrained(str(tmp), safe_serialization=True)
        if also is not None:
            also(tmp)
        stamp_metadata(tmp, settings)
        for name, text in (extra or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    except BaseException:  # a full disk: no half-written pipeline left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
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
