"""method=textual_inversion: new tokens whose embedding rows alone learn, saved as the files
diffusers, A1111 and ComfyUI load, scored as loaded."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dreamsweep.config_checks import ConfigError
from dreamsweep.models.tiny import build_tiny
from dreamsweep.runs import RunPaths, read_metrics
from dreamsweep.training.embeddings import FrozenRows, add_tokens, placeholder_tokens
from tests.helpers import FAST, compose_config, train_cli

TI = (*FAST, "method=textual_inversion", "method.num_vectors=2", "eval.every_n_steps=2")


def test_new_tokens_start_as_the_init_word_and_only_their_rows_change():
    c = build_tiny(seed=0, sample_size=64)
    tokens = placeholder_tokens("sks", 2)
    assert tokens == ["<sks>", "<sks>_1"]
    before = c.text_encoder.get_input_embeddings().weight.detach().clone()
    ids = add_tokens(c.tokenizer, c.text_encoder, tokens, "toy")
    weight = c.text_encoder.get_input_embeddings().weight
    toy = c.tokenizer.encode("toy", add_special_tokens=False)[0]
    assert weight.shape[0] == before.shape[0] + 2 and torch.equal(weight[ids[1]], before[toy])
    assert c.tokenizer("a <sks> <sks>_1 toy").input_ids[2:4] == ids  # one token each

    frozen = FrozenRows.around(c.text_encoder, ids)
    optimizer = torch.optim.AdamW([weight], lr=0.1, weight_decay=0.01)
    ids_in = torch.tensor([c.tokenizer("a <sks> <sks>_1 toy").input_ids])
    c.text_encoder(ids_in)[0].pow(2).mean().backward()
    assert weight.grad[toy].abs().sum() == 0 and weight.grad[ids[0]].abs().sum() > 0  # masked
    optimizer.step()
    frozen.restore()
    changed = (weight.detach() != frozen.original).any(dim=1).nonzero().flatten().tolist()
    assert changed == ids  # weight decay touched every row; all but the new ones restored


def test_the_trigger_must_be_new_and_the_text_encoder_frozen():
    c = build_tiny(seed=0, sample_size=64)
    add_tokens(c.tokenizer, c.text_encoder, ["<sks>"], "toy")
    with pytest.raises(ValueError, match="data.token: the tokenizer already knows <sks>"):
        add_tokens(c.tokenizer, c.text_encoder, ["<sks>"], "toy")
    with pytest.raises(ConfigError, match="train.text_encoder"):
        compose_config(*TI, "train.text_encoder=true")
    with pytest.raises(ConfigError, match="method.num_vectors"):
        compose_config(*TI, "method.num_vectors=0")


@pytest.fixture(scope="module")
def ti_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ti") / "run"
    proc = train_cli(run, *TI)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.mark.slow
def test_a_ti_run_saves_the_embedding_in_diffusers_and_a1111_comfyui_files(ti_run):
    for folder in ("best", "model", "model/raw"):  # model/: EMA vectors, raw/ beside them
        diffusers_file = load_file(str(ti_run / folder / "learned_embeds.safetensors"))
        a1111 = load_file(str(ti_run / folder / "sks.safetensors"))  # A1111's trigger: sks
        assert list(diffusers_file) == ["<sks>"] and list(a1111) == ["emb_params"]
        assert diffusers_file["<sks>"].shape == a1111["emb_params"].shape == (2, 32)
        assert json.loads((ti_run / folder / "base_model.json").read_text())["trigger"] == "<sks>"
    assert not (ti_run / "model" / "unet").exists()  # the embedding only, not a model
    ema, raw = (load_file(str(ti_run / f / "sks.safetensors")) for f in ("model", "model/raw"))
    assert not torch.equal(ema["emb_params"], raw["emb_params"])
    cells = [r for r in read_metrics(RunPaths(ti_run)) if r.get("kind") == "eval"]
    assert {r["step"] for r in cells} == {0, 2, 4, 6}
    assert all(r["eval/prior_drift"] == 0 for r in cells)  # the UNet and class words untouched


@pytest.mark.slow
def test_load_textual_inversion_draws_what_was_scored(ti_run):
    """from_pretrained(base) + load_textual_inversion(file, token="<sks>"), as a user does: a
    typed `<sks>` becomes the run's two tokens, and the images are the scored ones."""
    from diffusers import StableDiffusionPipeline

    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.evaluation.sampling import Job, generate
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.embeddings import typed_prompt
    from dreamsweep.training.lora import lora_base

    best = json.loads((ti_run / "best" / "cell.json").read_text())
    assert best["step"] > 0
    pipe = StableDiffusionPipeline.from_pretrained(lora_base(ti_run / "best"))
    pipe.load_textual_inversion(str(ti_run / "best" / "learned_embeds.safetensors"), token="<sks>")
    cfg = compose_config(*TI)
    scored_job = EvalSet.from_config(cfg).jobs[0]
    typed = typed_prompt(scored_job.prompt, cfg)
    assert "<sks>" in typed and "<sks>_1" not in typed
    assert pipe.maybe_convert_prompt(typed, pipe.tokenizer) == scored_job.prompt

    components = load_components(saved_model(lora_base(ti_run / "best")))
    components.tokenizer, components.text_encoder = pipe.tokenizer, pipe.text_encoder
    spec = sample_spec(cfg, Cell.from_record(best).sampling)
    image = generate(components, spec, [Job(scored_job.prompt, scored_job.seed)])[0]
    scored = ti_run / "eval" / f"step_{best['step']:06d}" / best["cell"] / "p00_s0.png"
    assert list(image.getdata()) == list(Image.open(scored).convert("RGB").getdata())
    step0 = ti_run / "eval" / "step_000000" / "pndm-n2-g7.5-base" / "p00_s0.png"
    assert list(image.getdata()) != list(Image.open(step0).convert("RGB").getdata())


@pytest.mark.slow
def test_the_a1111_file_loads_in_diffusers_too(ti_run):
    from diffusers import StableDiffusionPipeline

    from dreamsweep.models.embedding_files import load_embedding_components, read_embedding
    from dreamsweep.training.lora import lora_base

    pipe = StableDiffusionPipeline.from_pretrained(lora_base(ti_run / "best"))
    pipe.load_textual_inversion(str(ti_run / "best" / "sks.safetensors"), token="<sks>")
    ids = pipe.tokenizer.convert_tokens_to_ids(["<sks>", "<sks>_1"])
    loaded = pipe.text_encoder.get_input_embeddings().weight[ids]
    assert torch.equal(loaded, read_embedding(ti_run / "best")[1])
    ours = load_embedding_components(ti_run / "best")  # the same, through our loader
    assert torch.equal(ours.text_encoder.get_input_embeddings().weight[ids], loaded)


@pytest.mark.slow
def test_dreamsweep_export_format_embedding(ti_run, tmp_path):
    from dreamsweep.export.choose import ExportError
    from dreamsweep.export.command import export

    out, files = export(ti_run, formats=("embedding",), out_root=tmp_path)
    assert {"embedding/learned_embeds.safetensors", "embedding/sks.safetensors"} <= set(files)
    best = load_file(str(ti_run / "best" / "sks.safetensors"))["emb_params"]
    assert torch.equal(load_file(str(out / "embedding" / "sks.safetensors"))["emb_params"], best)
    card = (out / "README.md").read_text()
    assert "load_textual_inversion('embedding/learned_embeds.safetensors', token='<sks>')" in card
    assert "prompt = 'a <sks> toy" in card  # typed once; the pipeline expands it
    with pytest.raises(ExportError, match="--format embedding"):
        export(ti_run, formats=("single-file",), out_root=tmp_path)
