"""Textual inversion and pivotal tuning on SDXL: the trigger in both text encoders (one
embedding each), saved as diffusers' two files and the A1111/ComfyUI file with `clip_l` and
`clip_g`, and scored as a user loads it."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from dreamsweep.models.tiny import build_tiny_xl
from dreamsweep.runs import RunPaths, read_metrics
from dreamsweep.training.embeddings import add_trigger, init_text, placeholder_tokens
from tests.helpers import FAST, compose_config, train_cli

TI_XL = (
    *FAST,
    "model=tiny_xl",
    "method=textual_inversion",
    "method.num_vectors=2",
    "eval.every_n_steps=2",
)
TOKENS = placeholder_tokens("sks", 2)


def embedding_rows(state: dict) -> torch.Tensor:
    return next(v for k, v in state.items() if k.endswith("token_embedding.weight"))


def test_the_trigger_goes_into_both_encoders_from_each_ones_init_word():
    cfg = compose_config(*TI_XL)
    c = build_tiny_xl(seed=0, sample_size=64)
    encoders = (c.text_encoder, c.text_encoder_2)
    before = [e.get_input_embeddings().weight.detach().clone() for e in encoders]
    ids = add_trigger(cfg, c)  # the tiny SDXL has one tokenizer in both slots
    init = c.tokenizer.encode(init_text(cfg), add_special_tokens=False)[0]
    assert len(ids) == 2 and ids[0] == c.tokenizer_2.convert_tokens_to_ids(TOKENS)
    for encoder, old, new_ids in zip(encoders, before, ids, strict=True):
        weight = encoder.get_input_embeddings().weight
        assert weight.shape[0] == old.shape[0] + 2
        assert all(torch.equal(weight[i], old[init]) for i in new_ids)  # its own init row
    assert not torch.equal(before[0][init], before[1][init])  # two different encoders


@pytest.fixture(scope="module")
def ti_xl_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("ti_xl") / "run"
    proc = train_cli(run, *TI_XL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


@pytest.mark.slow
def test_an_sdxl_ti_run_saves_clip_l_and_clip_g(ti_xl_run):
    c = build_tiny_xl(seed=0, sample_size=64)
    widths = [e.get_input_embeddings().weight.shape[1] for e in (c.text_encoder, c.text_encoder_2)]
    for folder in ("best", "model", "model/raw"):
        a1111 = load_file(str(ti_xl_run / folder / "sks.safetensors"))
        first = load_file(str(ti_xl_run / folder / "learned_embeds.safetensors"))
        second = load_file(str(ti_xl_run / folder / "learned_embeds_2.safetensors"))
        assert set(a1111) == {"clip_l", "clip_g"} and list(first) == list(second) == ["<sks>"]
        assert a1111["clip_l"].shape == (2, widths[0]) and a1111["clip_g"].shape == (2, widths[1])
        assert torch.equal(first["<sks>"], a1111["clip_l"])
        assert torch.equal(second["<sks>"], a1111["clip_g"])
        info = json.loads((ti_xl_run / folder / "base_model.json").read_text())
        assert info["trigger"] == "<sks>" and info["type"] == "textual_inversion"
    assert not (ti_xl_run / "model" / "unet").exists()
    cells = [r for r in read_metrics(RunPaths(ti_xl_run)) if r.get("kind") == "eval"]
    assert {r["step"] for r in cells} == {0, 2, 4, 6}


@pytest.mark.slow
def test_only_the_new_rows_of_both_encoders_change(ti_xl_run):
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base

    base = load_components(saved_model(lora_base(ti_xl_run / "best")))
    init = base.tokenizer.encode(init_text(compose_config(*TI_XL)), add_special_tokens=False)[0]
    checkpoint = ti_xl_run / "checkpoints" / "step_000003"
    for encoder, file in ((base.text_encoder, "model"), (base.text_encoder_2, "model_1")):
        trained = load_file(str(checkpoint / f"{file}.safetensors"))
        original = encoder.state_dict()
        rows, old = embedding_rows(trained), embedding_rows(original)
        assert rows.shape[0] == old.shape[0] + 2
        assert torch.equal(rows[: old.shape[0]], old)  # the base vocabulary untouched
        assert all(not torch.equal(rows[i], old[init]) for i in (-2, -1))  # the new rows learned
        others = [k for k in original if not k.endswith("token_embedding.weight")]
        assert others and all(torch.equal(trained[k], original[k]) for k in others)


@pytest.mark.slow
def test_both_load_textual_inversion_calls_draw_what_was_scored(ti_xl_run):
    """from_pretrained(base), then the A1111 file's clip_l and clip_g loaded as diffusers'
    docs show for SDXL: the images are the scored ones."""
    from diffusers import StableDiffusionXLPipeline

    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.evaluation.sampling import Job, generate
    from dreamsweep.models.embedding_files import load_embedding_components
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base

    best_dir = ti_xl_run / "best"
    best = json.loads((best_dir / "cell.json").read_text())
    assert best["step"] > 0
    pipe = StableDiffusionXLPipeline.from_pretrained(lora_base(best_dir))
    load_both(pipe, best_dir)
    cfg = compose_config(*TI_XL)
    scored_job = EvalSet.from_config(cfg).jobs[0]
    components = load_components(saved_model(lora_base(best_dir)))
    components.tokenizer, components.text_encoder = pipe.tokenizer, pipe.text_encoder
    components.tokenizer_2, components.text_encoder_2 = pipe.tokenizer_2, pipe.text_encoder_2
    spec = sample_spec(cfg, Cell.from_record(best).sampling)
    image = generate(components, spec, [Job(scored_job.prompt, scored_job.seed)])[0]
    scored = ti_xl_run / "eval" / f"step_{best['step']:06d}" / best["cell"] / "p00_s0.png"
    assert list(image.getdata()) == list(Image.open(scored).convert("RGB").getdata())
    base_cell = next((ti_xl_run / "eval" / "step_000000").iterdir())
    step0 = Image.open(base_cell / "p00_s0.png").convert("RGB")
    assert list(image.getdata()) != list(step0.getdata())
    ours = load_embedding_components(best_dir)  # our loader puts the same rows in both
    for suffix in ("", "_2"):
        ids = getattr(pipe, f"tokenizer{suffix}").convert_tokens_to_ids(TOKENS)
        mine = getattr(ours, f"text_encoder{suffix}").get_input_embeddings().weight[ids]
        theirs = getattr(pipe, f"text_encoder{suffix}").get_input_embeddings().weight[ids]
        assert torch.equal(mine, theirs)


@pytest.mark.slow
def test_export_format_embedding_gives_the_sdxl_loading_code(ti_xl_run, tmp_path):
    from dreamsweep.export.command import export

    out, files = export(ti_xl_run, formats=("embedding",), out_root=tmp_path)
    assert {
        "embedding/learned_embeds.safetensors",
        "embedding/learned_embeds_2.safetensors",
        "embedding/sks.safetensors",
    } <= set(files)
    exported = load_file(str(out / "embedding" / "sks.safetensors"))
    best = load_file(str(ti_xl_run / "best" / "sks.safetensors"))
    assert set(exported) == {"clip_l", "clip_g"}
    assert all(torch.equal(exported[k], best[k]) for k in best)
    card = (out / "README.md").read_text()
    assert "StableDiffusionXLPipeline.from_pretrained" in card
    assert (
        "pipe.load_textual_inversion(state_dict['clip_g'], token='<sks>', "
        "text_encoder=pipe.text_encoder_2, tokenizer=pipe.tokenizer_2)"
    ) in card


def load_both(pipe, folder) -> None:
    """The A1111/ComfyUI file's clip_l and clip_g into the pipeline, as diffusers' docs show."""
    state_dict = load_file(str(folder / "sks.safetensors"))
    for key, suffix in (("clip_l", ""), ("clip_g", "_2")):
        pipe.load_textual_inversion(
            state_dict[key],
            token="<sks>",
            text_encoder=getattr(pipe, f"text_encoder{suffix}"),
            tokenizer=getattr(pipe, f"tokenizer{suffix}"),
        )


@pytest.mark.slow
def test_pivotal_lora_on_sdxl_loads_as_lora_plus_embedding(tmp_path):
    from diffusers import StableDiffusionXLPipeline

    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base
    from tests.test_pivotal import drawn_image, scored_image

    settings = (
        *FAST,
        "model=tiny_xl",
        "method=pivotal",
        "method.then=lora",
        "method.ti_steps=3",
        "eval.every_n_steps=2",
    )
    run = tmp_path / "run"
    proc = train_cli(run, *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = [r for r in read_metrics(RunPaths(run)) if r["kind"] == "train"]
    assert [r["train/phase"] for r in train] == [1, 1, 1, 2, 2, 2]
    for folder in ("best", "model"):
        files = {p.name for p in (run / folder).iterdir()}
        assert {"pytorch_lora_weights.safetensors", "learned_embeds_2.safetensors"} <= files
        assert set(load_file(str(run / folder / "sks.safetensors"))) == {"clip_l", "clip_g"}

    best = json.loads((run / "best" / "cell.json").read_text())
    pipe = StableDiffusionXLPipeline.from_pretrained(lora_base(run / "best"))
    pipe.load_lora_weights(str(run / "best"))
    load_both(pipe, run / "best")
    components = load_components(saved_model(lora_base(run / "best")))
    for name in ("unet", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2"):
        setattr(components, name, getattr(pipe, name))
    assert drawn_image(components, compose_config(*settings), best) == scored_image(run, best)
