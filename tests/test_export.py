"""`dreamsweep export`: from a finished sweep to weights a user loads, with a model card."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def dreamsweep(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dreamsweep.cli", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def exported(demo_grid, tmp_path_factory):
    """The demo grid's winner exported as a diffusers folder and a single file."""
    sweep, _ = demo_grid
    root = tmp_path_factory.mktemp("exports")
    proc = dreamsweep("export", sweep, "--out", root, "--format", "diffusers",
                      "--format", "single-file")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(root.iterdir()), proc


def test_the_sweep_s_winner_exports_as_a_pipeline_with_its_card(demo_grid, exported, tmp_path):
    from diffusers import StableDiffusionPipeline

    sweep, _ = demo_grid
    out, proc = exported
    assert f"export: {out}" in proc.stdout and "MB  diffusers/unet/" in proc.stdout
    cell = json.loads((out / "diffusers" / "dreamsweep_cell.json").read_text())
    assert cell["cell"] in out.name and f"step{cell['step']}" in out.name
    pipe = StableDiffusionPipeline.from_pretrained(out / "diffusers")
    assert type(pipe.scheduler).__name__.lower().startswith(cell["scheduler"])
    card = (out / "README.md").read_text()
    assert f"step {cell['step']}, {cell['cell']} (" in card and "python train.py" in card
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


def test_the_single_file_loads_as_a1111_would_with_the_same_weights(exported):
    """from_single_file (the loader of the original SD layout) reads back the exported UNet."""
    import torch
    from diffusers import StableDiffusionPipeline

    from dreamsweep.export.metadata import read_metadata

    out, _ = exported
    file = out / f"{out.name}.safetensors"
    meta = read_metadata(file)
    assert meta["modelspec.architecture"] == "stable-diffusion-v1"
    assert meta["modelspec.trigger_phrase"] == "sks toy" and "dreamsweep.settings" in meta
    assert "optuna" not in json.loads(meta["dreamsweep.settings"])
    single = StableDiffusionPipeline.from_single_file(
        file, config=str(out / "diffusers"), local_files_only=True
    )
    folder = StableDiffusionPipeline.from_pretrained(out / "diffusers")
    a, b = single.unet.state_dict(), folder.unet.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
