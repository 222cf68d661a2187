"""Loading base models, their fingerprint, and class images in the shared cache."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import pytest
from diffusers import DDPMScheduler

from dreamsweep import atomic
from dreamsweep.config import RunConfig
from dreamsweep.models.loading import ModelLoadError, fingerprint, load_components, saved_model
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.models.tiny import build_tiny
from dreamsweep.prior import class_images
from tests.helpers import compose_config

TINY = build_tiny(seed=0, sample_size=32)


def test_fingerprint_is_stable_and_follows_the_weights():
    assert fingerprint(build_tiny(seed=0, sample_size=32)) == fingerprint(TINY)
    assert fingerprint(build_tiny(seed=1, sample_size=32)) != fingerprint(TINY)


def test_a_saved_model_loads_from_a_local_folder(tmp_path):
    assemble_pipeline(TINY).save_pretrained(tmp_path / "sd")
    loaded = load_components(saved_model(tmp_path / "sd", name="sd15"))
    assert isinstance(loaded.noise_scheduler, DDPMScheduler)
    assert fingerprint(loaded) == fingerprint(TINY)


def test_a_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=r"model.path=.*does not exist"):
        load_components(saved_model(tmp_path / "nope", name="sd15"))


def test_a_folder_that_is_not_a_diffusers_model(tmp_path):
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_components(saved_model(tmp_path, name="sd15"))


def test_hub_ids_come_only_from_the_local_cache_when_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(ModelLoadError, match="HF_HUB_OFFLINE"):
        load_components(saved_model("some-org/some-model", name="sd15"))


def prior_config(num_images: int, **prior) -> RunConfig:
    settings = {"num_images": num_images, "sample_steps": 2, "batch_size": 2, **prior}
    return compose_config(
        "data.resolution=32", "prior=on", *(f"prior.{k}={v}" for k, v in settings.items())
    )


def digests(paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_more_class_images_later_reuses_the_first_ones(tmp_path):
    fp = fingerprint(TINY)
    first = class_images(prior_config(2), TINY, fp, tmp_path, log=lambda m: None)
    mtimes = [p.stat().st_mtime_ns for p in first]
    more = class_images(prior_config(3), TINY, fp, tmp_path, log=lambda m: None)
    assert more[:2] == first and [p.stat().st_mtime_ns for p in first] == mtimes
    assert len(more) == 3 and more[2].exists()
    assert not list(tmp_path.rglob("*.tmp"))


def test_a_class_image_does_not_depend_on_what_was_made_before(tmp_path):
    """Image i is made in the same aligned batch whether it comes in one go or in steps."""
    fp, quiet = fingerprint(TINY), lambda m: None
    class_images(prior_config(1, batch_size=2), TINY, fp, tmp_path / "steps", log=quiet)
    in_steps = class_images(prior_config(3, batch_size=2), TINY, fp, tmp_path / "steps", log=quiet)
    at_once = class_images(prior_config(3, batch_size=2), TINY, fp, tmp_path / "once", log=quiet)
    assert digests(in_steps) == digests(at_once)


def test_class_images_are_deterministic_and_keyed_by_what_made_them(tmp_path):
    fp = fingerprint(TINY)
    a = class_images(prior_config(1), TINY, fp, tmp_path / "a", log=lambda m: None)
    b = class_images(prior_config(1), TINY, fp, tmp_path / "b", log=lambda m: None)
    assert digests(a) == digests(b)
    other = class_images(prior_config(1, seed=5), TINY, fp, tmp_path / "a", log=lambda m: None)
    assert other[0].parent != a[0].parent


def test_a_class_dir_with_enough_images_is_used_as_is(tmp_path):
    from dreamsweep.data.toy import TOY_SUBJECT_DIR

    cfg = prior_config(3, class_dir=str(TOY_SUBJECT_DIR))
    paths = class_images(cfg, TINY, "unused", tmp_path, log=lambda m: None)
    assert all(p.parent == TOY_SUBJECT_DIR for p in paths) and not list(tmp_path.iterdir())


RACER = """
import sys
from dreamsweep.models.loading import fingerprint
from dreamsweep.models.tiny import build_tiny
from dreamsweep.prior import class_images
from tests.test_models_and_cache import prior_config
m = build_tiny(seed=0, sample_size=32)
denoised = []  # the UNet's forward passes: images this process made itself
m.unet.register_forward_hook(lambda *_: denoised.append(1))
made = class_images(prior_config(4), m, fingerprint(m), sys.argv[1], log=lambda _: None)
print(len(made), len(denoised))
"""


def test_concurrent_runs_share_one_cache_entry(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path)], env=env, stdout=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [r.communicate(timeout=300)[0] for r in racers]
    counts = sorted(tuple(map(int, out.split())) for out in outputs)
    assert counts[0] == (4, 0) and counts[1][0] == 4 and counts[1][1] > 0  # the other waited
    entry = next(p for p in (tmp_path / "class_images").iterdir() if p.is_dir())
    assert sorted(p.name for p in entry.iterdir()) == [
        "class_00000.png",
        "class_00001.png",
        "class_00002.png",
        "class_00003.png",
        "spec.json",
    ]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial_one(tmp_path):
    target = tmp_path / "latents.bin"
    atomic.write_bytes(target, b"complete")
    with pytest.raises(TypeError):
        atomic.write_bytes(target, "not bytes")  # fails inside the write
    assert target.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == ["latents.bin"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    out = tmp_path / "best"
    with atomic.new_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"first")
    with pytest.raises(OSError), atomic.new_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"half")
        raise OSError(28, "No space left on device")
    assert [p.name for p in tmp_path.iterdir()] == ["best"]  # no staging folder left
    assert (out / "weights.bin").read_bytes() == b"first"
    with atomic.new_folder(out) as tmp:
        (tmp / "weights.bin").write_bytes(b"second")
    assert [p.name for p in out.iterdir()] == ["weights.bin"]
    assert (out / "weights.bin").read_bytes() == b"second"
