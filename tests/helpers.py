"""Plain helpers the tests import: the real config tree composed with overrides, `train.py` run
as a user would, and a second venv for an older stack. (Fixtures live in conftest.py, which
pytest loads by itself and which is not imported.)"""

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
OFFLINE = {"WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
# Small and fast: a few steps of the tiny model with two class images (conf/debug/fast.yaml).
FAST = ("+debug=fast",)
# Prompts with markup in them: reports must show them as text, never as HTML.
MARKUP_PROMPTS = (
    "eval.prompt_list=['a {token} {class} <b>on</b> the beach & sand',"
    "'a {token} {class} in the snow']"
)
SEARCH = (
    "train.max_steps=8",
    "eval.every_n_steps=2",
    "hydra.sweeper.seed=0",
    "hydra.sweeper.pruner_kwargs={n_startup_trials:1,n_warmup_steps:0}",
)


def compose_raw(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="train", overrides=list(overrides))


def compose_config(*overrides: str, check_machine: bool = True) -> RunConfig:
    return load_config(compose_raw(*overrides), check_machine=check_machine)


def train_py(*args: str, timeout: float, env: dict) -> subprocess.CompletedProcess:
    """`python train.py ...` as a user would type it, from the repository root."""
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **env},
    )


def train_cli(run_dir: Path, *overrides: str, timeout: float = 600, env: dict | None = None):
    """One run, with its run folder at run_dir."""
    return train_py(f"hydra.run.dir={run_dir}", *overrides, timeout=timeout, env=env or {})


def multirun(sweep_dir: Path, *overrides: str, cache: Path, timeout: float = 900):
    """A sweep (`train.py -m`), with its sweep folder and cache given."""
    env = {**OFFLINE, "DREAMSWEEP_CACHE_DIR": str(cache)}
    return train_py("-m", *overrides, f"hydra.sweep.dir={sweep_dir}", timeout=timeout, env=env)


def cached_venv(name: str, *installs: list[str]) -> Path:
    """The python of a second venv built once from the package registry (one `pip install` per
    list in installs) into ~/.cache/dreamsweep-compat/<name> (DREAMSWEEP_COMPAT_DIR moves it);
    the test is skipped, with pip's last line, where it cannot be built."""
    from filelock import FileLock

    root = Path(os.environ.get("DREAMSWEEP_COMPAT_DIR", Path.home() / ".cache/dreamsweep-compat"))
    venv = root / name
    python = venv / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(venv) + ".lock"):
        if not (venv / "ready").exists():
            steps = [[sys.executable, "-m", "venv", "--clear", str(venv)]]
            steps += [[python, "-m", "pip", "install", "-q", *args] for args in installs]
            for step in steps:
                proc = subprocess.run(step, capture_output=True, text=True, timeout=1800)
                if proc.returncode != 0:
                    pytest.skip(f"cannot build {name} ({' '.join(map(str, step))}): "
                                f"{proc.stderr.strip().splitlines()[-1:]}")  # fmt: skip
            (venv / "ready").touch()
    return python
