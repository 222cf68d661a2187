"""The one place that turns SDComponents into its family's diffusers pipeline
(StableDiffusionPipeline, StableDiffusionXLPipeline)."""

from __future__ import annotations

from diffusers import DiffusionPipeline, PNDMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import family


def default_sampling_scheduler(c: SDComponents) -> PNDMScheduler:
    """PNDM (PLMS, no Runge-Kutta warmup) from the training config, as SD 1.x ships."""
    return PNDMScheduler.from_config(c.noise_scheduler.config, skip_prk_steps=True)


def assemble_pipeline(
    c: SDComponents, scheduler: SchedulerMixin | None = None
) -> DiffusionPipeline:
    """The family's pipeline over ``c`` (SD: without a safety checker, for research use and
    tiny models; SDXL: without the watermark).

    ``scheduler`` defaults to :func:`default_sampling_scheduler`; the components are shared, not
    copied, so training updates are visible to the pipeline.
    """
    chosen = scheduler if scheduler is not None else default_sampling_scheduler(c)
    return family(c).assemble(c, chosen)
