"""Atomic, resumable training state: a run killed at any moment restarts where it saved."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch


def save_atomic(state: dict, path: Path) -> None:
    """Write to a temp file then os.replace, so a crash never leaves a half-written checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_if_exists(path: Path) -> dict | None:
    return torch.load(path, map_location="cpu", weights_only=False) if path.exists() else None


class Every:
    """True once every ``seconds`` of wall time; drives periodic checkpoints and snapshots."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def __call__(self) -> bool:
        if time.monotonic() - self.last < self.seconds:
            return False
        self.last = time.monotonic()
        return True
