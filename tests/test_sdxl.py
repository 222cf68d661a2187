"""SDXL through the model-family seam: our sampler draws what StableDiffusionXLPipeline draws,
each training image is conditioned on its own size and crop, and `model=tiny_xl` trains,
evaluates, runs on two processes and as LoRA, as `python train.py` is started (its kill -9
resume: tests/test_training.py, the *_xl methods)."""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import StableDiffusionXLPipeline
from PIL import Image
from safetensors import safe_open

from dreamsweep.evaluation.sampling import Job, PromptEmbeddings, SampleSpec, generate, sample_batch
from dreamsweep.models.families import family, sdxl
from dreamsweep.models.loading import load_components, saved_model
from dreamsweep.models.tiny import build_tiny_xl
from dreamsweep.toyworld import XL_BASE_DIR
from dreamsweep.training.latents import build_latent_bank
from tests.helpers import FAST, compose_config, train_cli
from tests.test_sampling import max_pixel_difference, pipeline_images
from tests.test_training import cell_scores, train_losses

XL = (*FAST, "model=tiny_xl")
JOBS = [Job("a red star on a white background", 0), Job("a sks toy on a black background", 3)]


@pytest.fixture(scope="module")
def toy_xl():
    return load_components(saved_model(XL_BASE_DIR))


def test_model_sdxl_has_the_defaults_sdxl_users_expect():
    cfg = compose_config("model=sdxl", "model.path=/models/sdxl", "method=lora",
                         check_machine=False)  # fmt: skip
    assert cfg.data.resolution == 1024 and cfg.model.sample_size == 1024
    assert cfg.optim.lr == 1e-4 and cfg.method.rank == 4  # diffusers' SDXL LoRA script
    assert cfg.prior.num_images == 100 and cfg.eval.schedulers == ["dpmpp_2m"]
    with pytest.raises(ValueError, match="this model needs model.path"):
        compose_config("model=sdxl", check_machine=False)


def test_the_family_comes_from_what_is_loaded(toy_xl):
    assert toy_xl.family == "sdxl" and toy_xl.text_encoder_2 is not None
    assert family(toy_xl).pipeline_class is StableDiffusionXLPipeline
    assert build_tiny_xl().unet.config.addition_embed_type == "text_time"


@pytest.mark.parametrize("scheduler, negative", [("ddim", ""), ("euler_a", "a blue circle")])
def test_our_sampler_draws_what_the_sdxl_pipeline_draws_pixel_for_pixel(
    toy_xl, scheduler, negative
):
    """One image per batch, as the pipeline is called: no forced zeros with a negative prompt,
    zeros without one (force_zeros_for_empty_prompt), the same time ids, the same pixels."""
    spec = SampleSpec(scheduler, 4, 3.0, 32, negative, batch_size=1)
    for job in JOBS:
        ours = generate(toy_xl, spec, [job])
        assert max_pixel_difference(ours, pipeline_images(toy_xl, spec, [job])) == 0


def test_the_unconditional_branch_follows_the_pipelines_setting(toy_xl):
    """force_zeros_for_empty_prompt off: "" is encoded, and the images change (as the
    pipeline's do)."""
    spec = SampleSpec("ddim", 3, 3.0, 32, batch_size=1)
    zeros = generate(toy_xl, spec, JOBS[:1])
    toy_xl.force_zeros_for_empty_prompt = False
    try:
        encoded = generate(toy_xl, spec, JOBS[:1])
        assert max_pixel_difference(encoded, pipeline_images(toy_xl, spec, JOBS[:1])) == 0
    finally:
        toy_xl.force_zeros_for_empty_prompt = True
    assert max_pixel_difference(zeros, encoded) > 0


def test_each_training_image_keeps_its_true_size_and_crop(tmp_path):
    """A 96x48 photo at 32 px: resized to 64x32, cropped; SDXL's time ids (original h, w, crop
    top, left, target h, w) as diffusers' script records them, a flip mirroring the crop."""
    photo = tmp_path / "wide.png"
    Image.new("RGB", (96, 48), (200, 30, 30)).save(photo)
    vae = build_tiny_xl(sample_size=32).vae
    args = dict(resolution=32, flip=True, seed=0)
    centre = build_latent_bank([photo], vae, "fp", tmp_path / "cache", center_crop=True, **args)
    assert centre.time_ids[0].tolist() == [[48, 96, 0, 16, 32, 32], [48, 96, 0, 16, 32, 32]]
    random = build_latent_bank([photo], vae, "fp", tmp_path / "cache", center_crop=False, **args)
    ids = random.time_ids[0]
    assert ids.shape == (8, 6) and len({int(left) for left in ids[:4, 3]}) > 1
    assert torch.equal(ids[4:, 3], 64 - ids[:4, 3] - 32)  # mirrored crops: left from the right
    assert (ids[:, :2] == torch.tensor([48.0, 96.0])).all()


def test_training_conditions_each_row_on_its_own_time_ids():
    c = build_tiny_xl(sample_size=32)
    f = family(c)
    ids = f.tokenize(c, ["a sks toy", "a toy"])
    assert ids.shape[:2] == (2, 2)  # one row of ids per tokenizer
    text = f.encode_ids(f.text_encoders(c), ids)
    time_ids = torch.tensor([[48.0, 96, 0, 16, 32, 32], [32.0, 32, 0, 0, 32, 32]])
    kwargs = f.with_time_ids(text, time_ids).unet_kwargs()
    assert torch.equal(kwargs["added_cond_kwargs"]["time_ids"], time_ids)
    assert kwargs["added_cond_kwargs"]["text_embeds"].shape == (2, 32)
    hidden, pooled = sdxl.encode_text(c.text_encoder, c.text_encoder_2, c.tokenizer,
                                      c.tokenizer_2, ["a sks toy", "a toy"])  # fmt: skip
    assert torch.equal(hidden, text.hidden_states) and torch.equal(pooled, text.pooled)
    texts = PromptEmbeddings(c)
    image = sample_batch(c, SampleSpec("ddim", 1, 1.0, 32), ["a toy"], [0], texts)[0]
    assert image.size == (32, 32)


@pytest.fixture(scope="module")
def xl_run(tmp_path_factory):
    """The demo's settings on the tiny SDXL: prior preservation, both text encoders trained,
    EMA; every axis scored at the start and the end."""
    run_dir = tmp_path_factory.mktemp("xl") / "run"
    proc = train_cli(run_dir, *XL)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_tiny_xl_trains_both_encoders_and_keeps_an_sdxl_pipeline(xl_run):
    result = json.loads((xl_run / "result.json").read_text())
    assert result["state"] == "complete" and result["objective"] is not None
    pipe = StableDiffusionXLPipeline.from_pretrained(str(xl_run / "best"), local_files_only=True)
    base = build_tiny_xl(sample_size=64)
    for name in ("text_encoder", "text_encoder_2", "unet"):
        trained = dict(getattr(pipe, name).named_parameters())
        changed = [k for k, w in getattr(base, name).named_parameters()
                   if not torch.equal(trained[k], w)]  # fmt: skip
        assert changed, f"{name} was not trained"
    cells = {r["cell"] for r in cell_scores(xl_run)}
    assert {"pndm-n2-g5-base", "pndm-n2-g5-ema", "pndm-n2-g5-raw"} <= cells
    scored = json.loads((xl_run / "best" / "cell.json").read_text())
    image = pipe(
        JOBS[0].prompt, num_inference_steps=1, guidance_scale=5.0, height=64, width=64
    ).images[0]
    assert image.size == (64, 64) and scored["step"] == 6


@pytest.mark.slow
@pytest.mark.exhaustive
def test_tiny_xl_trains_on_two_cpu_processes_in_sync(tmp_path):
    run_dir = tmp_path / "ddp"
    proc = train_cli(run_dir, *XL, "launcher=multigpu", "launcher.num_processes=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["num_processes"] == 2 and result["weights_in_sync"] is True
    assert len(train_losses(run_dir)) == 6


@pytest.mark.slow
@pytest.mark.exhaustive
def test_a_tiny_xl_lora_on_both_encoders_reloads_to_what_was_scored(tmp_path):
    """from_pretrained(base) + load_lora_weights(<run>/best), as an SDXL user does."""
    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.training.lora import lora_base

    settings = (*XL, "method=lora", "method.alpha=8", "eval.every_n_steps=2", "optim.lr=1e-2")
    run = tmp_path / "lora"
    proc = train_cli(run, *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((run / "best" / "cell.json").read_text())
    pipe = StableDiffusionXLPipeline.from_pretrained(lora_base(run / "best"))
    pipe.load_lora_weights(str(run / "best"))
    cfg = compose_config(*settings)
    components = load_components(saved_model(lora_base(run / "best")))
    components.unet = pipe.unet
    components.text_encoder, components.text_encoder_2 = pipe.text_encoder, pipe.text_encoder_2
    images = generate(components, sample_spec(cfg, Cell.from_record(best).sampling),
                      EvalSet.from_config(cfg).jobs)  # fmt: skip
    scored = run / "eval" / f"step_{best['step']:06d}" / best["cell"] / "p00_s0.png"
    assert list(images[0].getdata()) == list(Image.open(scored).convert("RGB").getdata())
    with safe_open(str(run / "best" / "pytorch_lora_weights.safetensors"), "pt") as f:
        lora_keys = json.loads(f.metadata()["lora_adapter_metadata"])
    assert "text_encoder_2.r" in lora_keys and "text_encoder.r" in lora_keys


@pytest.mark.slow
@pytest.mark.exhaustive
def test_tiny_xl_with_frozen_encoders_min_snr_offset_noise_and_bf16(tmp_path):
    """Frozen encoders: both encoded once (hidden states and pooled), the VAE kept fp32 under
    bf16, min-SNR weights, offset noise, gradient accumulation and checkpointing."""
    run_dir = tmp_path / "options"
    options = ("train.text_encoder=false", "train.snr_gamma=5.0", "train.noise=offset",
               "train.grad_accum=2", "prior=off", "launcher.mixed_precision=bf16",
               "train.gradient_checkpointing=true")  # fmt: skip
    proc = train_cli(run_dir, *XL, *options)
    assert proc.returncode == 0, proc.stderr[-3000:]
    base = build_tiny_xl(sample_size=64)
    saved = StableDiffusionXLPipeline.from_pretrained(str(run_dir / "model"))
    for name in ("text_encoder", "text_encoder_2"):
        trained = dict(getattr(saved, name).named_parameters())
        # frozen encoders are cast to the mixed precision (bf16) and saved so, as for SD
        assert all(torch.equal(trained[k].float(), w.to(torch.bfloat16).float())
                   for k, w in getattr(base, name).named_parameters())  # fmt: skip
