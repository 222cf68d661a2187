"""Resumable training state (every N steps, keep K) and the final diffusers export.

A checkpoint is written to `checkpoints/step_<n>.tmp` and renamed to `step_<n>` when complete,
so a run killed while saving never resumes from half a checkpoint. The weights users load
(final, best, exports) are written by `models/saving.py`.
"""

from __future__ import annotations

import json
import pickle
import shutil
import warnings
from contextlib import contextmanager
from pathlib import Path

from accelerate import Accelerator
from diffusers.training_utils import EMAModel

from dreamsweep.atomic import swap_folder
from dreamsweep.runs import checkpoint_dirs, step_folder, write_failure
from dreamsweep.tensor_files import share_tensor_files
from dreamsweep.training.ema import load_ema, save_ema

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
    final = step_folder(root, step)
    tmp = final.with_name(final.name + ".tmp")  # one name for every rank: they all write there
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(tmp), safe_serialization=True)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            share_tensor_files(tmp)  # Accelerate writes through safetensors' 0600 temp file
            if ema is not None:
                save_ema(ema, tmp)
            (tmp / "trainer_state.json").write_text(json.dumps({"step": step}))
    except BaseException as err:  # a full disk: no partial checkpoint left, the previous stays
        cause = write_failure(tmp, err) if isinstance(err, Exception) else None
        shutil.rmtree(tmp, ignore_errors=True)
        if cause is not None:  # torch.save's "unexpected pos" is a full disk: say so
            raise cause from err
        raise
    if accelerator.is_main_process:
        swap_folder(tmp, final)
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
    try:
        with _quiet_unpickler():
            accelerator.load_state(str(path))
    except pickle.UnpicklingError:  # torch's weights-only loader refused a file: say which
        raise UnsafeCheckpoint(
            f"refusing to resume from {path}: {_not_weights_only(path)} holds more than tensors "
            "(the weights-only loader refuses it: not written by DreamSweep, or altered); delete "
            "that checkpoint folder to resume from an earlier one"
        ) from None
    if ema is not None:
        load_ema(ema, path)
        ema.to(accelerator.device)
    return step


def _not_weights_only(path: Path) -> str:
    """The checkpoint file(s) that Accelerate's weights-only load refuses."""
    from accelerate.utils.other import load

    refused = []
    for file in sorted([*path.glob("*.bin"), *path.glob("*.pkl")]):
        try:
            with _quiet_unpickler():
                load(file, map_location="cpu")
        except pickle.UnpicklingError:
            refused.append(file.name)
    return ", ".join(refused) or "a file"


@contextmanager
def _quiet_unpickler():
    """Torch warns about the pickle protocol of a file it is about to refuse anyway."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Detected pickle protocol")
        yield
