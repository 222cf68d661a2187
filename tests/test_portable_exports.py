"""Files that travel: what a run and `dreamsweep export` write can be read by another user and by
the common stacks, its card's code runs as written (whatever the token holds), its metadata says
how it was trained and names no path of this machine.

Two tiny runs (a full fine-tune and a LoRA with its text encoder) with a hostile token, their
exports in every format, and the shared cache they wrote.
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
import torch
from PIL import Image
from safetensors import safe_open

from dreamsweep.config import ASSETS_DIR
from dreamsweep.export.metadata import read_metadata
from tests.helpers import FAST, OFFLINE, ROOT, cached_venv, train_cli

pytestmark = pytest.mark.slow

# Quotes, a backslash, code that would run if pasted into a Python string, and markup.
HOSTILE = 'x\'"); import os; os.system("touch PWNED")#<script>alert(1)</script>\\'
HOSTILE_OVERRIDE = "data.token='" + HOSTILE.replace("\\", "\\\\").replace("'", "\\'") + "'"
KINDS = ("diffusers", "single-file", "lora-kohya")


def dreamsweep(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dreamsweep.cli", *map(str, args)]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A full fine-tune and a LoRA run (text encoder trained) with the hostile token, one
    cache; the LoRA's alpha is twice its rank."""
    root = tmp_path_factory.mktemp("travel")
    env = {**OFFLINE, "DREAMSWEEP_CACHE_DIR": str(root / "cache")}
    found = {"cache": root / "cache"}
    for name, extra in (("full", ()), ("lora", ("method=lora", "method.alpha=8"))):
        proc = train_cli(root / name, *FAST, HOSTILE_OVERRIDE, *extra, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        found[name] = root / name
    return found


@pytest.fixture(scope="module")
def exports(runs, tmp_path_factory) -> dict[str, Path]:
    """Every format of each run (the full fine-tune cannot be a kohya LoRA), and the LoRA in
    fp16."""
    out = tmp_path_factory.mktemp("exports")
    made = {}
    for name, formats in (("full", KINDS[:2]), ("lora", KINDS), ("lora-half", KINDS[2:])):
        args = [a for f in formats for a in ("--format", f)]
        half = ["--half"] if name.endswith("half") else []
        proc = dreamsweep("export", runs[name.split("-")[0]], "--out", out / name, *args, *half)
        assert proc.returncode == 0, proc.stderr[-3000:]
        made[name] = next((out / name).iterdir())
    return made


def test_every_safetensors_file_has_the_mode_of_the_json_beside_it(runs, exports):
    """safetensors writes through a 0600 temp file; a run's weights, checkpoints, best/, the
    exports and the cache's latents must be as readable as the JSON files next to them."""
    roots = [runs["full"], runs["lora"], runs["cache"], *exports.values()]
    files = [f for root in roots for f in root.rglob("*.safetensors")]
    kinds = {f.name for f in files}
    assert {"latents.safetensors", "ema.safetensors", "pytorch_lora_weights.safetensors"} <= kinds
    assert any("checkpoints" in f.parts for f in files) and any("best" in f.parts for f in files)
    umask = os.umask(0)
    os.umask(umask)
    json_mode = (runs["full"] / "result.json").stat().st_mode & 0o777
    assert json_mode == 0o666 & ~umask  # what open() gives a new file
    wrong = {str(f): oct(f.stat().st_mode & 0o777) for f in files}
    wrong = {f: m for f, m in wrong.items() if m != oct(json_mode)}
    assert not wrong, wrong


def test_text_encoder_weights_and_lora_keys_are_in_the_layout_every_stack_reads(exports):
    """transformers 4.x needs `text_model.` (without it, a random text encoder and a warning);
    transformers 5.x reads it too, to the same weights."""
    from diffusers import StableDiffusionPipeline

    folder = exports["full"] / "diffusers"
    with safe_open(str(folder / "text_encoder" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all(k.startswith("text_model.") for k in keys)
    pipe = StableDiffusionPipeline.from_pretrained(folder)
    with safe_open(str(folder / "text_encoder" / "model.safetensors"), "pt") as f:
        for key in keys:
            loaded = pipe.text_encoder.state_dict()[key.removeprefix("text_model.")]
            assert torch.equal(loaded, f.get_tensor(key)), key
    with safe_open(
        str(exports["lora"] / "diffusers" / "pytorch_lora_weights.safetensors"), "pt"
    ) as f:
        text = [k for k in f.keys() if k.startswith("text_encoder.")]  # noqa: SIM118
    assert text and all(k.startswith("text_encoder.text_model.encoder.") for k in text)


def _snippets(card: str) -> list[str]:
    return re.findall(r"^(`{3,})python\n(.*?)\n\1$", card, re.S | re.M)


def test_every_card_snippet_runs_and_redraws_the_scored_image_and_the_token_runs_nothing(
    runs, exports, tmp_path
):
    """Each card's Python blocks are run as a user would paste them, in the export folder:
    each draws the first scored image again; the hostile token stays a string."""
    snippets = {}
    for name in ("full", "lora"):
        card = (exports[name] / "README.md").read_text(encoding="utf-8")
        text = re.sub(r"^(`{3,}).*?^\1$", "", card, flags=re.S | re.M)  # outside code blocks
        assert "<script>" not in text and "&lt;script&gt;" in text and "PWNED" in text
        assert card.startswith("---\nbase_model: ") and "\ninstance_prompt: " in card
        assert f"best cell of run {name}." in card
        snippets[name] = [code for _, code in _snippets(card)]
    assert len(snippets["full"]) == 2 and len(snippets["lora"]) == 3  # one per loadable kind
    for name, codes in snippets.items():
        scored = sorted((runs[name] / "eval").glob("step_*/*/p00_s0.png"))[-1]
        for code in codes:
            assert HOSTILE not in code and repr(HOSTILE)[1:-1] in code  # escaped, inside a literal
            env = {**os.environ, **OFFLINE, "PYTHONPATH": str(ROOT / "src")}
            proc = subprocess.run([sys.executable, "-c", code], cwd=exports[name], env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 0, f"{code}\n{proc.stderr[-2000:]}"
            drawn = np.asarray(Image.open(exports[name] / "sample.png"), dtype=int)
            assert np.abs(drawn - np.asarray(Image.open(scored), dtype=int)).max() <= 2, code
    assert not list(ROOT.glob("PWNED")) and not list(exports["full"].parent.rglob("PWNED"))


def test_kohya_and_modelspec_metadata_of_the_exported_file_come_from_the_run(runs, exports):
    """Read back from the files as A1111 would, not from the function that builds them."""
    lora = exports["lora"]
    file = next(p for p in lora.glob("*-lora.safetensors"))
    meta = read_metadata(file)
    result = json.loads((runs["lora"] / "result.json").read_text())
    cell = json.loads((lora / "diffusers" / "base_model.json").read_text())
    instance = len(list((ASSETS_DIR / "toy_subject").glob("*.png")))
    assert meta["ss_num_train_images"] == str(result["data"]["instance_images"]) == str(instance)
    assert meta["ss_num_reg_images"] == "2"  # +debug=fast: prior.num_images=2
    assert meta["ss_steps"] == str(result["best"]["step"]) and meta["ss_max_train_steps"] == "6"
    assert meta["ss_output_name"] == file.stem and meta["ss_seed"] == "42"
    assert meta["ss_optimizer"].startswith("torch.optim.adamw.AdamW(weight_decay=0.01,")
    assert meta["ss_lr_scheduler"] == "constant" and meta["ss_prior_loss_weight"] == "1.0"
    assert meta["ss_text_encoder_lr"] == meta["ss_learning_rate"] == "0.0001"
    assert meta["ss_network_alpha"] == "8.0" and meta["ss_network_dim"] == "4"
    assert meta["ss_sd_model_name"] == "tiny" and cell["model"] == "tiny"
    assert float(meta["ss_training_started_at"]) == pytest.approx(result["training_started_at"])
    assert meta["modelspec.usage_hint"].startswith(f"Trigger: {HOSTILE} toy")
    assert meta["modelspec.license"] == "apache-2.0" and meta["modelspec.author"] == "DreamSweep"
    assert meta["modelspec.thumbnail"].startswith("data:image/jpeg;base64,")
    assert meta["modelspec.implementation_version"] == "0.30.0"
    assert "modelspec.description" in meta and "merged_from" not in str(meta.keys())
    single = read_metadata(next(p for p in lora.glob("*.safetensors") if p != file))
    assert single["modelspec.merged_from"] == f"tiny, {lora.name}-lora"
    with safe_open(str(next(exports["lora-half"].glob("*-lora.safetensors"))), "pt") as f:
        alphas = {f.get_tensor(k).dtype for k in f.keys() if k.endswith(".alpha")}  # noqa: SIM118
    assert alphas == {torch.float16}  # as kohya saves with --save_precision fp16


def test_published_files_name_no_path_of_this_machine(runs, exports):
    """Settings in the metadata keep the settings but not cache_dir or local folders; the LoRA
    names its base by what travels; the card neither."""
    local = (str(runs["full"].parent), str(ASSETS_DIR), str(Path.home()), "/tmp/")
    for export in exports.values():
        for file in export.rglob("*.safetensors"):
            text = json.dumps(read_metadata(file))
            assert not [p for p in local if p in text], (file, text[:400])
        card = (export / "README.md").read_text(encoding="utf-8")
        assert not [p for p in local if p in card]
    single = next(p for p in exports["full"].glob("*.safetensors"))
    settings = json.loads(read_metadata(single)["dreamsweep.settings"])
    assert "cache_dir" not in settings and settings["optim"]["lr"] > 0
    assert settings["data"]["instance_dir"] is None and settings["model"]["path"] is None
    info = json.loads((exports["lora"] / "diffusers" / "base_model.json").read_text())
    assert info["base"] == "../base_model" and (exports["lora"] / "base_model").is_dir()


# The stack kohya pins and most SD tools run: transformers 4.x, diffusers before 0.33.
OLD_STACK = {"transformers": "4.54.1", "diffusers": "0.32.2", "peft": "0.17.1"}


def old_stack_python() -> Path:
    """A second venv with OLD_STACK and this torch, built once (tests/helpers.cached_venv)."""
    torch_version = torch.__version__.split("+")[0]
    name = "-".join(f"{k}{v}" for k, v in OLD_STACK.items()) + f"-torch{torch_version}"
    pins = [f"{k}=={v}" for k, v in OLD_STACK.items()]
    return cached_venv(name, [f"torch=={torch_version}"], [*pins, "safetensors", "pillow"])


LOADING_INFO = """
import sys
from transformers import CLIPTextModel
model, info = CLIPTextModel.from_pretrained(sys.argv[1], output_loading_info=True)
print({k: len(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys")})
"""


def test_every_export_kind_loads_the_same_on_transformers_4_and_diffusers_0_32(runs, exports):
    """The card's snippets run on the old stack and draw the image scored on this one (so the
    text encoder, the LoRA keys and the alpha all arrive); transformers 4 finds every text
    encoder key of the diffusers folder."""
    python = old_stack_python()
    folder = exports["full"] / "diffusers" / "text_encoder"
    proc = subprocess.run([python, "-c", LOADING_INFO, folder], capture_output=True, text=True)
    assert proc.stdout.strip() == "{'missing_keys': 0, 'unexpected_keys': 0}", proc.stderr[-2000:]
    for name in ("full", "lora"):
        card = (exports[name] / "README.md").read_text(encoding="utf-8")
        scored = sorted((runs[name] / "eval").glob("step_*/*/p00_s0.png"))[-1]
        for _, code in _snippets(card):
            (exports[name] / "sample.png").unlink(missing_ok=True)
            env = {**os.environ, **OFFLINE}
            proc = subprocess.run([python, "-c", code], cwd=exports[name], env=env,
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert proc.returncode == 0, f"{code}\n{proc.stderr[-2000:]}"
            drawn = np.asarray(Image.open(exports[name] / "sample.png"), dtype=int)
            assert np.abs(drawn - np.asarray(Image.open(scored), dtype=int)).max() <= 2, code
