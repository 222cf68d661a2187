"""The one place that turns SDComponents into a diffusers StableDiffusionPipeline."""

from __future__ import annotations

from diffusers import PNDMScheduler, StableDiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from dreamsweep.models.components import SDComponents


def default_sampling_scheduler(c: SDComponents) -> PNDMScheduler:
    """PNDM (PLMS, no Runge-Kutta warmup) from the training config, as SD 1.x ships."""
    return PNDMScheduler.from_config(c.noise_scheduler.config, skip_prk_steps=True)


def assemble_pipeline(
    c: SDComponents, scheduler: SchedulerMixin | None = None
) -> StableDiffusionPipeline:
    """StableDiffusionPipeline over ``c`` without a safety checker (research use, tiny models).

    ``scheduler`` defaults to :func:`default_sampling_scheduler`; the components are shared, not
    copied, so training updates are visible to the pipeline.
    """
    return StableDiffusionPipeline(
        vae=c.vae,
        text_encoder=c.text_encoder,
        tokenizer=c.tokenizer,
        unet=c.unet,
        scheduler=scheduler if scheduler is not None else default_sampling_scheduler(c),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
