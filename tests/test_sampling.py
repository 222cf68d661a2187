"""Schedulers by name, the prompt suite, and seeded sampling with the same noise everywhere."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamsweep.data.prompt_text import fill_prompt
from dreamsweep.evaluation import prompts
from dreamsweep.evaluation.sampling import Job, PromptEmbeddings, SampleSpec, generate, job_seed
from dreamsweep.evaluation.schedulers import SCHEDULERS, make_scheduler
from dreamsweep.models.components import SDComponents
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.models.tiny import build_tiny

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


def test_one_filler_for_every_prompt_folds_white_space_and_keeps_stray_braces():
    """Captions, the evaluation suite, the class prompt and the card all fill this way."""
    assert fill_prompt("a photo of {token} {class}", "sks", "dog") == "a photo of sks dog"
    assert fill_prompt("  {token}\t {class} on a {rug}\n", "sks", "dog") == "sks dog on a {rug}"
    assert fill_prompt("a {token} {class}", "", "dog") == "a dog"  # no double space
    assert fill_prompt("a photo of {token} {class}", "sks", "") == "a photo of sks"


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


def max_pixel_difference(a: list, b: list) -> int:
    assert len(a) == len(b)
    return max(
        int(np.abs(np.asarray(x, dtype=np.int16) - np.asarray(y, dtype=np.int16)).max())
        for x, y in zip(a, b, strict=True)
    )


def pipeline_images(components: SDComponents, spec: SampleSpec, jobs: list[Job]) -> list:
    """What a plain StableDiffusionPipeline.__call__ draws with the jobs' generators."""
    pipe = assemble_pipeline(
        components, make_scheduler(spec.scheduler, components.noise_scheduler.config)
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        [j.prompt for j in jobs],
        negative_prompt=[spec.negative_prompt] * len(jobs) if spec.negative_prompt else None,
        height=spec.resolution,
        width=spec.resolution,
        num_inference_steps=spec.num_inference_steps,
        guidance_scale=spec.guidance_scale,
        generator=[torch.Generator().manual_seed(job_seed(j)) for j in jobs],
    ).images


JOBS = [Job("a photo of sks toy", 0), Job("a red sks toy", 1), Job("a photo of sks toy", 5)]


@pytest.mark.parametrize(
    "scheduler, negative",
    [("ddim", ""), ("pndm", "blurry"), ("euler_a", "")],  # euler_a: noise at every step
)
def test_our_loop_draws_what_the_diffusers_pipeline_draws(scheduler, negative):
    spec = SampleSpec(scheduler, 3, 7.5, 32, negative, batch_size=3)
    ours = generate(TINY, spec, JOBS)
    assert max_pixel_difference(ours, pipeline_images(TINY, spec, JOBS)) <= 2


def test_the_toy_world_prompts_keep_their_own_token_length():
    """The toy world's tokenizer holds 16 tokens: prompts are padded to that, never to 77."""
    from dreamsweep.toyworld.pipeline import load

    pipe = load()
    components = SDComponents(
        pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler
    )
    assert PromptEmbeddings(components)(["a sks toy"]).shape[1] == 16
    spec = SampleSpec("ddim", 4, 3.0, 32, batch_size=2)
    jobs = [Job("a sks toy", 0), Job("a sks toy on a blue background", 1)]
    ours = generate(components, spec, jobs)
    assert max_pixel_difference(ours, pipeline_images(components, spec, jobs)) <= 2


def test_a_prompt_is_encoded_once_for_every_batch_and_cell():
    calls = []
    handle = TINY.text_encoder.register_forward_pre_hook(lambda m, args: calls.append(1))
    texts = PromptEmbeddings(TINY)
    try:
        for scheduler in ("ddim", "pndm"):  # two cells with the same weights
            generate(TINY, SampleSpec(scheduler, 1, 7.5, 32, batch_size=1), JOBS, texts=texts)
    finally:
        handle.remove()
    assert len(calls) == 3  # two prompts and the empty negative prompt, each once


def test_sampling_again_gives_the_same_bits():
    spec = SampleSpec("euler_a", 2, 7.5, 32, batch_size=2)
    first, second = generate(TINY, spec, JOBS), generate(TINY, spec, JOBS)
    assert [im.tobytes() for im in first] == [im.tobytes() for im in second]
