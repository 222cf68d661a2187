"""Seeded, batched text-to-image sampling: the one generation loop (evaluation, class images).

Every image has its own generator (evaluation: seeded from its (prompt, seed) pair, see
job_seed; class images: prior.seed + i). It draws the image's initial noise and any noise a
stochastic scheduler adds, so the same cell at two checkpoints starts from the same noise and
the curves show the model changing, not the noise. An image does not depend on which others
share its batch except for the float rounding of batched kernels (a few 1/255 at most):
images are bit-identical for the same jobs, batch size, device and thread count.

The loop is StableDiffusionPipeline.__call__'s (StableDiffusionXLPipeline's for SDXL: the
family supplies the conditioning: pooled embeddings, time ids, the zeroed unconditional branch)
(init_noise_sigma, scale_model_input, both halves of classifier-free guidance in one UNet call,
scheduler.step, vae.decode, the same post-processing) minus its per-call work: a prompt is
encoded once per set of weights (PromptEmbeddings) and shared by every batch, cell and
scheduler sampled with them.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from diffusers.image_processor import VaeImageProcessor
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from dreamsweep.evaluation.schedulers import make_scheduler
from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import Conditioning, family

# Part of the cache keys of generated images (class images, base samples): images made by an
# older loop may differ in the last bits, and a cache entry must hold one loop's images.
LOOP_VERSION = 2  # 1: StableDiffusionPipeline.__call__ per batch


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


@contextmanager
def _eval_mode(*modules: torch.nn.Module) -> Iterator[None]:
    """Sample without dropout; each module's training flag is restored after."""
    was_training = [m.training for m in modules]
    try:
        for m in modules:
            m.eval()
        yield
    finally:
        for m, training in zip(modules, was_training, strict=True):
            m.train(training)


class PromptEmbeddings:
    """Text-encoder outputs by prompt, for one set of text-encoder weights.

    Each prompt is encoded once and alone (as the family's pipeline encodes it), so its
    embedding does not depend on the prompts it is sampled with. Valid while the text encoders
    are unchanged: an evaluation makes one per set of weights and eval step, shared by all its
    cells and schedulers.
    """

    def __init__(self, components: SDComponents) -> None:
        self.components = components
        self._by_prompt: dict[str, Conditioning] = {}

    def __call__(self, prompts: Sequence[str]) -> torch.Tensor:
        """The hidden states of `prompts`, stacked in order (batch, tokens, width)."""
        return self.conditioning(prompts).hidden_states

    def conditioning(self, prompts: Sequence[str]) -> Conditioning:
        """The text conditioning of `prompts` in order (SDXL: with the pooled embeddings)."""
        for prompt in prompts:
            if prompt not in self._by_prompt:
                self._by_prompt[prompt] = self._encode(prompt)
        return Conditioning.cat([self._by_prompt[p] for p in prompts])

    @torch.no_grad()
    def _encode(self, prompt: str) -> Conditioning:
        c = self.components
        f = family(c)
        with _eval_mode(*f.text_encoders(c)):
            return f.encode_prompt(c, prompt)


@torch.no_grad()
def sample_batch(
    components: SDComponents,
    spec: SampleSpec,
    prompts: Sequence[str],
    seeds: Sequence[int],
    texts: PromptEmbeddings,
    device: torch.device | str | None = None,
) -> list[Image.Image]:
    """One batch: image k from prompts[k], with a generator seeded seeds[k] for its initial
    noise and its scheduler noise. `device` defaults to the UNet's (the pipeline's)."""
    device = torch.device(device) if device is not None else components.unet.device
    f = family(components)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    context = texts.conditioning(prompts)
    guided = spec.guidance_scale > 1.0  # as the pipeline: no unconditional half at <= 1
    if guided:
        negative = f.negative(components, texts.conditioning, spec.negative_prompt, len(prompts))
        context = Conditioning.cat([negative, context])
    context = f.with_time_ids(context.to(device), f.sampling_time_ids(spec.resolution))
    scheduler = make_scheduler(spec.scheduler, components.noise_scheduler.config)
    scheduler.set_timesteps(spec.num_inference_steps, device=device)
    dtype = context.hidden_states.dtype
    latents = _initial_noise(components, spec.resolution, generators, dtype, device)
    latents = latents * scheduler.init_noise_sigma
    with _eval_mode(components.unet, components.vae):
        latents = _denoise(
            components.unet,
            scheduler,
            latents,
            context,
            spec.guidance_scale if guided else None,
            _step_kwargs(scheduler, generators),
        )
        return _decode(components.vae, latents)


def _initial_noise(
    components: SDComponents,
    resolution: int,
    generators: list[torch.Generator],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor:
    """Each image's noise drawn on the CPU from its own generator, as prepare_latents does."""
    factor = 2 ** (len(components.vae.config.block_out_channels) - 1)
    size = resolution // factor
    shape = (len(generators), components.unet.config.in_channels, size, size)
    return randn_tensor(shape, generator=generators, device=device, dtype=dtype)


def _step_kwargs(scheduler, generators: list[torch.Generator]) -> dict:
    """What the pipeline passes to scheduler.step: eta 0 (DDIM) and the images' generators,
    so a stochastic scheduler draws an image's noise from that image's generator."""
    accepted = inspect.signature(scheduler.step).parameters
    kwargs: dict = {}
    if "eta" in accepted:
        kwargs["eta"] = 0.0
    if "generator" in accepted:
        kwargs["generator"] = generators
    return kwargs


def _denoise(
    unet,
    scheduler,
    latents: torch.Tensor,
    context: Conditioning,
    guidance_scale: float | None,
    step_kwargs: dict,
) -> torch.Tensor:
    """The pipeline's denoising loop; with guidance, context is [negative; prompts] and both
    halves go through the UNet in one call."""
    for t in scheduler.timesteps:
        model_input = torch.cat([latents] * 2) if guidance_scale is not None else latents
        model_input = scheduler.scale_model_input(model_input, t)
        noise_pred = unet(model_input, t, **context.unet_kwargs(), return_dict=False)[0]
        if guidance_scale is not None:
            uncond, text = noise_pred.chunk(2)
            noise_pred = uncond + guidance_scale * (text - uncond)
        latents = scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0]
    return latents


def _decode(vae, latents: torch.Tensor) -> list[Image.Image]:
    """VAE decode and the pipeline's post-processing (denormalise, round to 8 bits)."""
    images = vae.decode((latents / vae.config.scaling_factor).to(vae.dtype), return_dict=False)[0]
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return VaeImageProcessor(vae_scale_factor=factor).postprocess(images, output_type="pil")


def generate(
    components: SDComponents,
    spec: SampleSpec,
    jobs: Sequence[Job],
    device: torch.device | str | None = None,
    *,
    texts: PromptEmbeddings | None = None,
    progress: Callable[[int], object] | None = None,
) -> list[Image.Image]:
    """One image per job, in batches of spec.batch_size (job i in batch i // batch_size).

    `device` defaults to the UNet's. Pass `texts` to share prompt embeddings between calls
    with the same weights; `progress` gets the number of images after each batch (bar.update)."""
    texts = texts if texts is not None else PromptEmbeddings(components)
    images: list[Image.Image] = []
    for start in range(0, len(jobs), spec.batch_size):
        batch = jobs[start : start + spec.batch_size]
        prompts, seeds = [j.prompt for j in batch], [job_seed(j) for j in batch]
        images += sample_batch(components, spec, prompts, seeds, texts, device)
        if progress is not None:
            progress(len(batch))
    return images
