"""The oldest torch pyproject allows (torch>=2.4) trains: gradient clipping inside the fused
AdamW kernel (its `grad_scale`, training/loop.clip_gradients) matches torch's clip_grad_norm_
there, and a short run completes. Run in a second venv built once into ~/.cache."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.helpers import FAST, OFFLINE, ROOT, cached_venv

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

# The floors together: torch's, transformers' (pyproject's), and the newest diffusers that
# imports on torch 2.4 (0.37 fails on its custom ops; 0.39+ declare torch>=2.6). transformers
# 5.15+ declare torch>=2.5 and 5.2x torch>=2.6, and refuse older torch at import.
FLOOR = {"torch": "2.4.1", "transformers": "5.0.0", "diffusers": "0.36.0"}


def floor_python() -> str:
    """A venv with FLOOR and the rest of pyproject's dependencies (the package itself is read
    from this checkout's src/, so the venv serves every later commit)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pinned = [f"{name}=={version}" for name, version in FLOOR.items()]
    rest = [spec for spec in project["dependencies"] if re.split(r"[<>=]", spec)[0] not in FLOOR]
    name = "floor-" + "-".join(f"{k}{v}" for k, v in FLOOR.items())
    # torch first and alone: resolving it with the rest in one go backtracks for many minutes.
    return str(cached_venv(name, pinned[:1], [*pinned, *rest, "pytest"]))


def in_floor_venv(python: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [python, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
@pytest.mark.exhaustive  # its venv is a 5.5 GB CUDA build of torch 2.4 from PyPI: not in CI's run
def test_the_oldest_torch_clips_in_the_fused_adamw_and_trains(tmp_path):
    python = floor_python()
    versions = in_floor_venv(python, "-c", "import torch; print(torch.__version__)", timeout=120)
    assert versions.stdout.strip().split("+")[0] == FLOOR["torch"], versions.stderr[-2000:]
    clipping = in_floor_venv(
        python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--override-ini=addopts=",
        "tests/test_loss.py::test_clipping_matches_torch_clip_grad_norm", timeout=600,
    )  # fmt: skip
    assert "2 passed" in clipping.stdout, clipping.stdout[-3000:]  # fused and foreach kernels
    run = tmp_path / "run"
    train = in_floor_venv(
        python, "train.py", *FAST, "optim.max_grad_norm=0.01", f"hydra.run.dir={run}",
        f"cache_dir={tmp_path / 'cache'}", timeout=600,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    result = json.loads((run / "result.json").read_text())
    assert result["state"] == "complete" and result["final_step"] == 6
