"""Schedulers by name, the prompt suite, and seeded sampling with the same noise everywhere."""

from __future__ import annotations

import pytest
import torch

from dreamsweep import prompts
from dreamsweep.models.tiny import build_tiny
from dreamsweep.sampling import Job, SampleSpec, generate
from dreamsweep.schedulers import SCHEDULERS, make_scheduler

TINY = build_tiny(seed=0, sample_size=32)


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_every_scheduler_builds_from_the_model_config(name):
    scheduler = make_scheduler(name, TINY.noise_scheduler.config)
    assert scheduler.config.beta_schedule == "scaled_linear"


def test_an_unknown_scheduler_lists_the_known_ones():
    with pytest.raises(ValueError, match="dpmpp_2m"):
        make_scheduler("dpm++", TINY.noise_scheduler.config)


def test_prompt_suites_fit_the_subject():
    assert prompts.suite_name("auto", "dog") == "live"
    assert prompts.suite_name("auto", "backpack") == "objects"
    chosen = prompts.select_templates("auto", "dog", 5)
    assert len(chosen) == 5 and len(set(chosen)) == 5
    assert any("wearing" in t or "outfit" in t for t in prompts.select_templates("live", "dog", 25))
    assert prompts.select_templates("objects", "toy", 2, own=["{token} {class} on the moon"]) == [
        "{token} {class} on the moon"
    ]
    assert prompts.without_token("a {token} {class} in the snow", "dog") == "a dog in the snow"


def first_unet_input(components, job):
    """The noisy latents the UNet sees first: the initial noise of this job."""
    seen = []
    handle = components.unet.register_forward_pre_hook(lambda m, args: seen.append(args[0]))
    generate(components, SampleSpec("ddim", 1, 1.0, 32), [job])
    handle.remove()
    return seen[0]


def test_the_same_job_starts_from_the_same_noise_at_any_checkpoint():
    job = Job("a photo of sks toy", seed=3)
    other_checkpoint = build_tiny(seed=1, sample_size=32)
    assert torch.equal(first_unet_input(TINY, job), first_unet_input(other_checkpoint, job))
    assert not torch.equal(first_unet_input(TINY, job), first_unet_input(TINY, Job(job.prompt, 4)))


def test_batching_does_not_change_an_image():
    spec = SampleSpec("ddim", 2, 3.0, 32, batch_size=1)
    jobs = [Job("a photo of sks toy", 0), Job("a red sks toy", 1)]
    one_by_one = generate(TINY, spec, jobs)
    together = generate(TINY, SampleSpec("ddim", 2, 3.0, 32, batch_size=2), jobs)
    for a, b in zip(one_by_one, together, strict=True):
        diff = torch.tensor(list(a.getdata())).float() - torch.tensor(list(b.getdata())).float()
        assert diff.abs().max() <= 2  # equal up to float rounding of batched matmuls
