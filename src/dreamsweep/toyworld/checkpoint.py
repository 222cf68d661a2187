"""Atomic, resumable training state: a run killed at any moment restarts where it saved."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from dreamsweep import atomic


def save_atomic(state: dict, path: Path) -> None:
    """Through `atomic.write_with`, so a crash never leaves a half-written checkpoint."""
    atomic.write_with(path, lambda tmp: torch.save(state, tmp))


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
