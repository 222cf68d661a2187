"""The validation loss's class set is held out: class images the run never trains on, made once
per class prompt and base model into the cache, with prior preservation on or off."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
import torch
from accelerate import Accelerator

from dreamsweep.config_checks import HELD_OUT_SEEDS
from dreamsweep.data.dataset import instance_examples
from dreamsweep.models.loading import fingerprint, load_components
from dreamsweep.prior import class_images, held_out_class_images
from dreamsweep.runs import RunPaths, read_metrics
from dreamsweep.training.batches import draw_batch, step_generator
from dreamsweep.training.setup import prepare_data
from dreamsweep.training.val_loss import validation_sets
from tests.helpers import FAST, compose_config, train_cli


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rows(bank) -> set[bytes]:
    """Each image's latent (first variant) as bytes: equal images give equal rows."""
    return {row.numpy().tobytes() for row in bank.mean[:, 0]}


def test_held_out_class_images_never_enter_a_training_batch(tmp_path):
    cfg = compose_config(
        *FAST,
        "prior.num_images=4",
        "prior.batch_size=2",
        "eval.val_class_images=4",
        "train.max_steps=50",
        "train.batch_size=2",
        "train.grad_accum=2",
    )
    components = load_components(cfg.model)
    fp, quiet = fingerprint(components), lambda message: None
    data = prepare_data(cfg, components, Accelerator(cpu=True), fp, tmp_path, quiet)

    # The files: no held-out image is a training image, by content, not only by name or seed.
    held_out = held_out_class_images(cfg, components, fp, tmp_path, log=quiet)
    trained = class_images(cfg, components, fp, tmp_path, log=quiet)
    trained += [e.image for e in instance_examples(cfg)]
    assert len(held_out) == 4 and {digest(p) for p in held_out}.isdisjoint(map(digest, trained))

    # The latents the steps draw from, and what the validation loss measures.
    held_out_bank = data.held_out_class[0]
    assert rows(held_out_bank).isdisjoint(rows(data.prior) | rows(data.instance))
    sets = validation_sets(data)
    assert sets["class"][0] is held_out_bank and sets["class_train"][0] is data.prior

    # Every batch of the run, drawn as train_step draws it. With the posteriors' spread set to
    # 0 a drawn latent is its image's latent (the draws' choices of image do not change).
    exact = dataclasses.replace(
        data,
        instance=dataclasses.replace(data.instance, std=torch.zeros_like(data.instance.std)),
        prior=dataclasses.replace(data.prior, std=torch.zeros_like(data.prior.std)),
    )
    all_rows = {r for bank in (data.instance, data.prior) for r in _all_variants(bank)}
    drawn = set()
    for step in range(1, cfg.train.max_steps + 1):
        for micro in range(cfg.train.grad_accum):
            g = step_generator(cfg.train.seed, step, micro, 0)
            batch = draw_batch(exact, cfg.train.batch_size, g)
            drawn |= {row.numpy().tobytes() for row in batch.latents}
    assert drawn <= all_rows and drawn.isdisjoint(_all_variants(held_out_bank))
    assert rows(data.prior) & drawn  # class images were drawn: the check above is not empty


def _all_variants(bank) -> set[bytes]:
    return {
        bank.mean[i, v].numpy().tobytes()
        for i in range(len(bank.mean))
        for v in range(bank.num_variants)
    }


def test_held_out_seeds_are_disjoint_from_the_priors(tmp_path):
    """Keyed like the training class images (same prompt, model, sampler), from seeds of their
    own: a run whose prior.seed starts where the held-out seeds start makes the same images."""
    cfg = compose_config(*FAST, "prior.num_images=2", "eval.val_class_images=2")
    shifted = compose_config(*FAST, "prior.num_images=2", f"prior.seed={HELD_OUT_SEEDS}")
    components = load_components(cfg.model)
    fp, quiet = fingerprint(components), lambda message: None
    held_out = held_out_class_images(cfg, components, fp, tmp_path, log=quiet)
    assert class_images(shifted, components, fp, tmp_path, log=quiet) == held_out
    assert len(list((tmp_path / "class_images").iterdir())) == 2  # one entry and its lock


def val_lines(run_dir) -> list[dict]:
    return [r for r in read_metrics(RunPaths(run_dir)) if r.get("kind") == "val"]


@pytest.mark.slow
def test_val_class_loss_exists_without_prior_and_the_held_out_set_is_made_once(tmp_path):
    cache = {"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    off = train_cli(tmp_path / "off", *FAST, "prior=off", env=cache)
    assert off.returncode == 0, off.stderr[-3000:]
    assert "generating 2 held-out class images" in off.stdout
    val = val_lines(tmp_path / "off")
    assert [(r["step"], r["weights"]) for r in val] == [(0, "base"), (6, "ema"), (6, "raw")]
    assert all("val/class_loss" in r and "val/class_train_loss" not in r for r in val)
    result = json.loads(RunPaths(tmp_path / "off").result.read_text())
    assert result["val"]["val/class_loss"] == val[1]["val/class_loss"]  # a search objective

    entry = next(p for p in (tmp_path / "cache" / "class_images").iterdir() if p.is_dir())
    made = {p: p.stat().st_mtime_ns for p in entry.glob("*.png")}
    on = train_cli(tmp_path / "on", *FAST, env=cache)  # prior on: its own set is made now
    assert on.returncode == 0, on.stderr[-3000:]
    assert "generating 2 class images" in on.stdout and "held-out" not in on.stdout
    assert {p: p.stat().st_mtime_ns for p in entry.glob("*.png")} == made
    base_off, base_on = val_lines(tmp_path / "off")[0], val_lines(tmp_path / "on")[0]
    assert base_on["val/class_loss"] == base_off["val/class_loss"]  # the same held-out images
    assert base_on["val/class_train_loss"] != base_on["val/class_loss"]  # another set
