"""Seeded, batched generation of an evaluation set (schedulers by name: schedulers.py).

Every (prompt, seed) pair gets its own generator seeded from the pair, so the same cell at two
checkpoints starts from the same noise and the curves show the model changing, not the noise.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from dreamsweep.models.components import SDComponents
from dreamsweep.models.pipeline import assemble_pipeline
from dreamsweep.schedulers import make_scheduler


@dataclass(frozen=True)
class SampleSpec:
    """How to sample one cell: everything except the weights."""

    scheduler: str
    num_inference_steps: int
    guidance_scale: float
    resolution: int
    negative_prompt: str = ""
    batch_size: int = 8


@dataclass(frozen=True)
class Job:
    prompt: str
    seed: int


def job_seed(job: Job) -> int:
    """A seed for the (prompt, seed) pair, stable across processes and runs."""
    digest = hashlib.sha256(f"{job.prompt}\x00{job.seed}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % (2**63)


@torch.no_grad()
def generate(
    components: SDComponents,
    spec: SampleSpec,
    jobs: Sequence[Job],
    device: torch.device | str = "cpu",
) -> list[Image.Image]:
    """One image per job, in batches; modules are put in eval mode and restored after."""
    modules = [components.unet, components.vae, components.text_encoder]
    was_training = [m.training for m in modules]
    scheduler = make_scheduler(spec.scheduler, components.noise_scheduler.config)
    pipe = assemble_pipeline(components, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images: list[Image.Image] = []
    try:
        for m in modules:
            m.eval()
        for start in range(0, len(jobs), spec.batch_size):
            batch = jobs[start : start + spec.batch_size]
            images += pipe(
                [j.prompt for j in batch],
                negative_prompt=[spec.negative_prompt] * len(batch)
                if spec.negative_prompt
                else None,
                height=spec.resolution,
                width=spec.resolution,
                num_inference_steps=spec.num_inference_steps,
                guidance_scale=spec.guidance_scale,
                generator=[torch.Generator().manual_seed(job_seed(j)) for j in batch],
            ).images
    finally:
        for m, training in zip(modules, was_training, strict=True):
            m.train(training)
    return images
