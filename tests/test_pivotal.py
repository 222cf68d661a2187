"""method=pivotal: textual inversion first, then DreamBooth or LoRA from the learned
embeddings, in one run with one step counter; its weights load as users load them."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dreamsweep.config_checks import ConfigError
from dreamsweep.models.tiny import build_tiny
from dreamsweep.runs import RunPaths, read_metrics
from tests.helpers import FAST, compose_config, train_cli

PIVOTAL = (*FAST, "method=pivotal", "method.ti_steps=3", "eval.every_n_steps=2")


def test_the_first_phase_must_be_shorter_than_the_run():
    with pytest.raises(ConfigError, match="method.ti_steps"):
        compose_config(*PIVOTAL, "method.ti_steps=6")
    with pytest.raises(ConfigError, match="method.then"):
        compose_config(*PIVOTAL, "method.then=loha")


def scored_image(run, record) -> list:
    path = run / "eval" / f"step_{record['step']:06d}" / record["cell"] / "p00_s0.png"
    return list(Image.open(path).convert("RGB").getdata())


def drawn_image(components, cfg, record) -> list:
    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.evaluation.sampling import generate

    spec = sample_spec(cfg, Cell.from_record(record).sampling)
    job = EvalSet.from_config(cfg).jobs[0]
    return list(generate(components, spec, [job])[0].getdata())


@pytest.mark.slow
def test_pivotal_dreambooth_trains_the_embedding_then_the_unet(tmp_path):
    run = tmp_path / "run"
    proc = train_cli(run, *PIVOTAL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = [r for r in read_metrics(RunPaths(run)) if r["kind"] == "train"]
    assert [r["train/phase"] for r in train] == [1, 1, 1, 2, 2, 2]  # one counter, one curve
    assert [r["train/lr"] for r in train] == [2e-3] * 3 + [5e-6] * 3  # each phase's own LR

    base = build_tiny(seed=0, sample_size=64).unet.state_dict()
    at_3 = load_file(str(run / "checkpoints" / "step_000003" / "model.safetensors"))
    assert all(torch.equal(at_3[k], base[k]) for k in base)  # phase 1: the UNet frozen
    final = load_file(str(run / "model" / "unet_raw" / "diffusion_pytorch_model.safetensors"))
    assert any(not torch.equal(final[k], base[k]) for k in base)  # phase 2 trains it
    text_3 = load_file(str(run / "checkpoints" / "step_000003" / "model_1.safetensors"))
    rows = next(v for k, v in text_3.items() if k.endswith("token_embedding.weight"))
    learned = load_file(str(run / "model" / "learned_embeds.safetensors"))["<sks>"]
    assert torch.equal(rows[-1:], learned)  # frozen after phase 1 (train_embeddings=false)

    # best/: a pipeline whose tokenizer knows <sks>, plus the embedding files; it draws what
    # was scored
    from diffusers import StableDiffusionPipeline

    from dreamsweep.models.loading import load_components, saved_model

    best = json.loads((run / "best" / "cell.json").read_text())
    pipe = StableDiffusionPipeline.from_pretrained(str(run / "best"))
    assert pipe.tokenizer.convert_tokens_to_ids("<sks>") == pipe.tokenizer.vocab_size
    assert list(load_file(str(run / "best" / "sks.safetensors"))) == ["emb_params"]
    components = load_components(saved_model(run / "best"))
    assert drawn_image(components, compose_config(*PIVOTAL), best) == scored_image(run, best)

    # exported: the pipeline, a single file with the base's vocabulary (what A1111 and ComfyUI
    # load) and the embedding beside it; the card's prompt types the trigger
    from dreamsweep.export.command import export

    out, files = export(run, formats=("diffusers", "single-file", "embedding"), out_root=tmp_path)
    single = next(out / f for f in files if f.endswith(".safetensors") and "/" not in f)
    assert exported_single_file_rows(single) == pipe.tokenizer.vocab_size
    assert "embedding/sks.safetensors" in files
    assert "prompt = 'a <sks> toy" in (out / "README.md").read_text()


@pytest.mark.slow
def test_pivotal_lora_loads_as_lora_plus_embedding_and_draws_what_was_scored(tmp_path):
    from diffusers import StableDiffusionPipeline

    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base

    settings = (*PIVOTAL, "method.then=lora", "optim.lr=1e-3", "method.train_embeddings=true")
    run = tmp_path / "run"
    proc = train_cli(run, *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((run / "best" / "cell.json").read_text())
    files = {p.name for p in (run / "best").iterdir()}
    assert {"pytorch_lora_weights.safetensors", "learned_embeds.safetensors"} <= files
    assert best["step"] > 3  # a phase-2 cell

    pipe = StableDiffusionPipeline.from_pretrained(lora_base(run / "best"))
    pipe.load_lora_weights(str(run / "best"))
    pipe.load_textual_inversion(str(run / "best" / "learned_embeds.safetensors"), token="<sks>")
    components = load_components(saved_model(lora_base(run / "best")))
    components.unet, components.text_encoder = pipe.unet, pipe.text_encoder
    components.tokenizer = pipe.tokenizer
    assert drawn_image(components, compose_config(*settings), best) == scored_image(run, best)


def exported_single_file_rows(file) -> int:
    tensors = load_file(str(file))
    return next(v for k, v in tensors.items() if k.endswith("token_embedding.weight")).shape[0]
