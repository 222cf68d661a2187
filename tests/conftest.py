"""Shared fixtures: the real config tree composed with overrides, outputs in a temp dir."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from dreamsweep.config import RunConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def compose_raw(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def compose_config(*overrides: str, check_machine: bool = True) -> RunConfig:
    return load_config(compose_raw(*overrides), check_machine=check_machine)


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session, as for the runs of a sweep (class images made once)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def _isolated_env(shared_cache, monkeypatch):
    """W&B offline, the test cache, no hub: nothing touches ~/.cache or the network."""
    monkeypatch.setenv("DREAMSWEEP_CACHE_DIR", str(shared_cache))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def train_cli(run_dir: Path, *overrides: str, timeout: float = 600, env: dict | None = None):
    """Run `python train.py` as a user would, with its run folder at run_dir."""
    cmd = [sys.executable, str(ROOT / "train.py"), f"hydra.run.dir={run_dir}", *overrides]
    return subprocess.run(
        cmd,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# Small and fast: a few steps of the tiny model with two class images.
FAST = (
    "train.max_steps=6",
    "train.checkpoint_every=3",
    "prior.num_images=2",
    "prior.sample_steps=2",
    "tracker=disk",
    "eval.num_inference_steps=[2]",
    "eval.num_prompts=2",
)
