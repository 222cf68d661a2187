"""An SDXL run exported as a user exports it: a short LoRA run on the toy world XL (both text
encoders trained) through `dreamsweep export` in every format, each file loaded by the card's
own code, which draws the image the run scored for that cell again.

Not model=tiny_xl: its two text encoders are both 32 wide, and diffusers' from_single_file
tells SDXL's encoders apart by width, so it would read the first encoder's weights into the
second (real SDXL: 768 and 1280; the toy world XL's differ too).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dreamsweep.export.metadata import read_metadata
from dreamsweep.runs import cell_dir, sample_file
from tests.helpers import OFFLINE, ROOT, train_cli

pytestmark = pytest.mark.slow
KINDS = ("diffusers", "single-file", "lora-kohya")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sdxl_export")
    env = {**OFFLINE, "DREAMSWEEP_CACHE_DIR": str(root / "cache")}
    run = root / "run"
    short = ("train.max_steps=4", "train.checkpoint_every=2", "eval.every_n_steps=2",
             "prior.num_images=4", "prior.sample_steps=4", "eval.val_class_images=4",
             "eval.num_inference_steps=[4]", "eval.seeds=[0,1]", "tracker=disk")  # fmt: skip
    proc = train_cli(run, "model=toyworld_xl", "method=lora", "train.text_encoder=true", *short,
                     env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    formats = [a for kind in KINDS for a in ("--format", kind)]
    command = [sys.executable, "-m", "dreamsweep.cli", "export", str(run), "--out", str(root / "x")]
    proc = subprocess.run([*command, *formats], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, next((root / "x").iterdir())


def test_an_sdxl_lora_run_exports_files_that_name_sdxl(exported):
    run, export = exported
    kohya = next(export.glob("*-lora.safetensors"))
    single = next(p for p in export.glob("*.safetensors") if p != kohya)
    lora_meta, single_meta = read_metadata(kohya), read_metadata(single)
    assert lora_meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert lora_meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert single_meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
    from safetensors import safe_open

    with safe_open(str(kohya), "pt") as f:
        names = list(f.keys())
    assert any(n.startswith("lora_te1_") for n in names)
    assert any(n.startswith("lora_te2_") for n in names)  # both encoders were trained
    assert any(n.startswith("lora_unet_") for n in names)


def test_every_snippet_of_the_sdxl_card_redraws_the_scored_image(exported):
    """Each Python block of the card, pasted as is into the export folder, loads its file with
    StableDiffusionXLPipeline and draws the first scored image of the cell again."""
    run, export = exported
    card = (export / "README.md").read_text(encoding="utf-8")
    assert "- stable-diffusion-xl" in card
    codes = [code for _, code in re.findall(r"^(`{3,})python\n(.*?)\n\1$", card, re.S | re.M)]
    assert len(codes) == 3  # the diffusers LoRA, the merged single file, the kohya LoRA
    best = json.loads((run / "result.json").read_text())["best"]  # what export picks
    scored = sample_file(cell_dir(run, best["step"], best["cell"]), 0, 0)
    env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT / "src")}
    for code in codes:
        assert "StableDiffusionXLPipeline" in code
        proc = subprocess.run([sys.executable, "-c", code], cwd=export, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert proc.returncode == 0, f"{code}\n{proc.stderr[-2000:]}"
        drawn = np.asarray(Image.open(export / "sample.png"), dtype=int)
        assert np.abs(drawn - np.asarray(Image.open(scored), dtype=int)).max() <= 2, code
