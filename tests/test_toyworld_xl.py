"""The toy world in SDXL shape: a real StableDiffusionXLPipeline on the SD toy world's VAE,
pretrained by the same resumable trainer (a few tiny-batch steps here)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

from dreamsweep.models.families import sdxl
from dreamsweep.toyworld import BASE_DIR
from dreamsweep.toyworld.cli import adopt_sd_parts, export_base
from dreamsweep.toyworld.models import XL_DESIGNS, build_xl_text_encoders
from dreamsweep.toyworld.pipeline import folder_bytes, load
from dreamsweep.toyworld.pretrain import BaseConfig, save, setup, snapshot, train_step


def _trainer(work, design: str = "xl1"):
    adopt_sd_parts(work, BASE_DIR)  # what base-xl does: the SD toy world's tokenizer and VAE
    return setup(BaseConfig(design=design, batch_size=4), work)


def test_the_xl_design_keeps_the_sdxl_width_invariants(tmp_path):
    design = XL_DESIGNS["xl1"]
    trainer = _trainer(tmp_path)
    unet = trainer.unet
    first, second = trainer.text_encoders["text_encoder"], trainer.text_encoders["text_encoder_2"]
    assert unet.config.addition_embed_type == "text_time"
    assert unet.config.cross_attention_dim == first.config.hidden_size + second.config.hidden_size
    assert unet.config.projection_class_embeddings_input_dim == (
        6 * unet.config.addition_time_embed_dim + second.config.projection_dim
    )
    assert design.cross_attention_dim == 96 and design.added_embed_dim == 6 * 8 + 64
    wide = UNet2DConditionModel.from_config({**unet.config, "cross_attention_dim": 64})
    with pytest.raises(ValueError, match="cross_attention_dim 64 != text encoder widths 32 \\+ 64"):
        sdxl.check_sizes(wide, first, second)
    _, other = build_xl_text_encoders(replace(design, projection_dim=32), trainer.tokenizer)
    with pytest.raises(ValueError, match="projection_class_embeddings_input_dim 112"):
        sdxl.check_sizes(unet, first, other)


def test_the_xl_base_is_a_plain_sdxl_pipeline_on_the_sd_toy_vae(tmp_path):
    trainer = _trainer(tmp_path / "work")
    train_step(trainer)
    folder = snapshot(trainer, tmp_path / "snapshot")
    pipe = StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a red star on a white background",
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (32, 32)  # the default size: UNet sample size x VAE factor
    assert pipe.config.force_zeros_for_empty_prompt
    sd_vae = load(BASE_DIR).vae.state_dict()
    assert all(torch.equal(v, sd_vae[k]) for k, v in pipe.vae.state_dict().items())

    export_base(folder, tmp_path / "assets" / "base")  # what export-xl writes
    assert folder_bytes(tmp_path / "assets" / "base") <= 8e6
    shipped = load(tmp_path / "assets" / "base")
    assert isinstance(shipped, StableDiffusionXLPipeline)
    assert shipped.unet.dtype == torch.float32  # stored fp16, loads fp32


@pytest.mark.parametrize("design", ["xl1", "f2"])
def test_pretraining_resumes_bit_identically_after_a_restart(tmp_path, design):
    straight = _trainer(tmp_path / "straight", design)
    losses = [train_step(straight) for _ in range(3)]

    first = _trainer(tmp_path / "restarted", design)
    resumed_losses = [train_step(first) for _ in range(2)]
    save(first)
    del first  # a killed process: only the checkpoint survives
    resumed = _trainer(tmp_path / "restarted", design)
    assert resumed.step == 2
    resumed_losses.append(train_step(resumed))

    assert resumed_losses == losses
    for name in ("unet", *straight.text_encoders):
        module = straight.unet if name == "unet" else straight.text_encoders[name]
        other = resumed.unet if name == "unet" else resumed.text_encoders[name]
        assert all(torch.equal(v, other.state_dict()[k]) for k, v in module.state_dict().items())
        assert all(torch.equal(v, resumed.ema[name][k]) for k, v in straight.ema[name].items())
    assert straight.optimizer.state_dict()["state"][0]["exp_avg"].equal(
        resumed.optimizer.state_dict()["state"][0]["exp_avg"]
    )


def test_the_work_folder_may_follow_the_verb_and_defaults_per_family_under_the_cache(
    monkeypatch, tmp_path
):
    from dreamsweep.toyworld.cli import parser, work_folder

    after = parser().parse_args(["base-xl", "--work", "/tmp/w", "--minutes", "1"])
    before = parser().parse_args(["--work", "/tmp/w", "sheet"])
    assert str(after.work) == str(before.work) == "/tmp/w" and after.design == "xl1"
    monkeypatch.setenv("DREAMSWEEP_CACHE_DIR", str(tmp_path))
    assert work_folder(parser().parse_args(["export-xl"])) == tmp_path / "toyworld_xl_work"
    assert work_folder(parser().parse_args(["base"])) == tmp_path / "toyworld_work"
    monkeypatch.delenv("DREAMSWEEP_CACHE_DIR")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert work_folder(parser().parse_args(["sheet"])) == (
        tmp_path / "home" / ".cache" / "dreamsweep" / "toyworld_work"
    )
