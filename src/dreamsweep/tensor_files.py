"""The one writer of `.safetensors` files, for users and for the cache.

safetensors >= 0.8 writes through a 0600 temporary file (huggingface/safetensors#782), so every
file it writes is readable by its owner only: another user, an A1111/ComfyUI service account or
a container could not load an export, and two users could not share `DREAMSWEEP_CACHE_DIR`.
Files written here get the mode of a plain `open()` beside them (`0666 & ~umask`), like the JSON
files of a run. Files that other libraries write (`save_pretrained`, Accelerate's `save_state`)
are given the same mode by :func:`share_tensor_files`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save_file

from dreamsweep import atomic
from dreamsweep.atomic import SHARED_MODE


def save_tensors(
    tensors: Mapping[str, torch.Tensor], path: str | Path, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``tensors`` to ``path`` through `atomic.write_with` (the shared mode; a reader
    sees the old file or the new one, never half of one)."""
    meta = dict(metadata) if metadata else None
    return atomic.write_with(Path(path), lambda tmp: save_file(dict(tensors), str(tmp), meta))


def share_tensor_files(root: Path) -> None:
    """Give every `.safetensors` file under ``root`` (or ``root`` itself) the shared mode:
    for files another library wrote through safetensors' 0600 temporary file."""
    files = [root] if root.is_file() else root.rglob("*.safetensors")
    for file in files:
        os.chmod(file, SHARED_MODE)
