"""`dreamsweep export`: from a finished sweep to weights a user loads, with a model card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def dreamsweep(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dreamsweep.cli", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_the_sweep_s_winner_exports_as_a_pipeline_with_its_card(demo_grid, tmp_path):
    from diffusers import StableDiffusionPipeline

    sweep, _ = demo_grid
    proc = dreamsweep("export", sweep, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = next(tmp_path.iterdir())
    assert f"export: {out}" in proc.stdout and "MB  diffusers/unet/" in proc.stdout
    cell = json.loads((out / "diffusers" / "dreamsweep_cell.json").read_text())
    assert cell["cell"] in out.name and f"step{cell['step']}" in out.name
    pipe = StableDiffusionPipeline.from_pretrained(out / "diffusers")
    assert type(pipe.scheduler).__name__.lower().startswith(cell["scheduler"])
    card = (out / "README.md").read_text()
    assert f"step {cell['step']}, `{cell['cell']}`" in card and "python train.py" in card
    assert (out / "samples.png").exists() and "![samples](samples.png)" in card

    half = dreamsweep("export", sweep, "--out", tmp_path / "half", "--half")
    assert half.returncode == 0, half.stderr[-3000:]
    unet = "diffusers/unet/diffusion_pytorch_model.safetensors"
    full_size = (out / unet).stat().st_size
    half_size = (next((tmp_path / "half").iterdir()) / unet).stat().st_size
    assert 0.45 < half_size / full_size < 0.55


def test_a_cell_whose_weights_were_not_kept_is_one_line_with_the_command(demo_grid, tmp_path):
    sweep, _ = demo_grid
    proc = dreamsweep("export", sweep, "--cell", "nowhere/step_000001/x", "--out", tmp_path)
    assert proc.returncode == 1 and proc.stderr.startswith("error: no trained cell")
    assert "Traceback" not in proc.stderr
