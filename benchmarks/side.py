"""One side of a timed comparison, in a process of its own: `python benchmarks/side.py KIND ...`.

The parent (run.py) starts the two sides of a comparison side by side, waits until both are
set up, then sends "run" to A, B, A, B, ...: the work is interleaved one unit at a time, so a
change of machine load hits both sides alike. Each side holds only its own models, so its
peak memory is its own. Protocol: one JSON line per answer on the original stdout (libraries'
prints are sent to stderr): {"ready": ...} after set-up, {"seconds": ...} per "run",
{"peak_mb": ...} after "quit".

Kinds (--model: tiny, toyworld, tiny_xl, toyworld_xl, or sdxl with --model-path):
  step-ours      the product's train_step on a TrainState set up as the worker does it
  step-floor     a bare loop: precomputed latents (and embeddings), UNet (+ text encoder)
                 forward + backward + AdamW, nothing else (the tiny SD model, --size)
  step-floor-xl  the same for an SDXL (side_xl.py): both text encoders, pooled embeds and
                 time ids in the order of diffusers' train_dreambooth_lora_sdxl.py
  eval-ours      the product's evaluation sampling, generate(components, spec, jobs)
  eval-plain     one StableDiffusionPipeline.__call__ (StableDiffusionXLPipeline's) per
                 image, same scheduler/steps/guidance, from the same weights
  save-tiny      write the tiny model as a diffusers folder (for the plain scripts), then exit
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent))

import product  # noqa: E402  (benchmarks/ is not a package)
from side_common import (  # noqa: E402
    MODELS,
    SHIPPED,
    STEP_VARIANTS,
    XL_MODELS,
    autocast,
    count_params,
    fastest_adamw,
    run_overrides,
)
from side_xl import step_floor_xl  # noqa: E402

# block_out_channels of the UNet per size; everything else is the tiny model's UNet config.
# (32, 64) is the tiny UNet (0.79 M parameters); the others give ~10x and ~100x as many.
UNET_WIDTHS = {"tiny": (32, 64), "10x": (104, 208), "100x": (320, 640)}

Unit = Callable[[], Any]  # one unit of work; may return a value the parent compares


def sized_unet(tiny_unet: Any, size: str) -> Any:
    """The tiny UNet's architecture at the widths of `size`, seeded like the tiny model."""
    import torch
    from diffusers import UNet2DConditionModel

    config = {**tiny_unet.config, "block_out_channels": UNET_WIDTHS[size]}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return UNet2DConditionModel.from_config(config)


def step_ours(args: argparse.Namespace) -> tuple[Unit, dict]:
    cfg = product.compose(run_overrides(args) + STEP_VARIANTS[args.variant])
    unet = None
    if args.size != "tiny":
        unet = sized_unet(product.tiny_components(args.resolution).unet, args.size)
    state = product.train_state(cfg, args.device, unet)
    counter = iter(range(1, 10**9))
    return lambda: product.train_step(state, next(counter)), {"params": count_params(state.unet)}


def step_floor(args: argparse.Namespace) -> tuple[Unit, dict]:
    """The bare loop of the same work (batch 1, or 1 + 1 class image under prior)."""
    if args.variant == "lora":
        raise SystemExit("step-floor: variant lora is measured on SDXL (step-floor-xl)")
    import torch
    import torch.nn.functional as F

    c = product.tiny_components(args.resolution)
    unet = c.unet if args.size == "tiny" else sized_unet(c.unet, args.size)
    unet.to(args.device).train()
    train_te, prior = args.variant in ("te", "prior"), args.variant == "prior"
    batch = 2 if prior else 1
    ids = c.tokenizer(
        ["a photo of sks toy", "a photo of toy"][:batch],
        padding="max_length",
        max_length=c.tokenizer.model_max_length,
        return_tensors="pt",
    ).input_ids.to(args.device)
    te = c.text_encoder.to(args.device)
    with torch.no_grad():
        embeddings = te(ids)[0]
    params = list(unet.parameters()) + (list(te.parameters()) if train_te else [])
    te.train(train_te).requires_grad_(train_te)
    optimizer = fastest_adamw(params)
    scaler = torch.amp.GradScaler(args.device, enabled=args.precision == "fp16")
    latent = args.resolution // 2 ** (len(c.vae.config.block_out_channels) - 1)
    latents = torch.randn(batch, 4, latent, latent, device=args.device)  # values do not matter
    scheduler = c.noise_scheduler
    del c  # the VAE stays out of the floor's memory

    def step() -> None:
        noise = torch.randn_like(latents)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=args.device)
        noisy = scheduler.add_noise(latents, noise, t)
        with autocast(args):
            cond = te(ids)[0] if train_te else embeddings
            pred = unet(noisy, t, cond).sample
        loss = F.mse_loss(pred[:1].float(), noise[:1])
        if prior:
            loss = loss + F.mse_loss(pred[1:].float(), noise[1:])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    return step, {"params": count_params(unet)}


def eval_overrides(args: argparse.Namespace) -> list[str]:
    """The run whose first evaluation cell is sampled: a tiny model (or a real SDXL) at the
    benchmark's resolution, or a toy world (the default demo) exactly as it ships."""
    if args.model in SHIPPED:
        return [f"model={args.model}", "tracker=disk"]
    return run_overrides(args)


def eval_ours(args: argparse.Namespace) -> tuple[Unit, dict]:
    cfg = product.compose(eval_overrides(args))
    spec, jobs = product.eval_jobs(cfg)
    components = product.load_model(cfg)
    for module in components.modules():
        module.to(args.device)

    def sample() -> list[float]:
        with autocast(args):
            images = product.generate(components, spec, jobs, args.device)
        return _image_means(images)

    return sample, {"images": len(jobs), "spec": repr(spec)}


# The plain pipeline of each family, as a user loads it (no safety checker, no watermark).
PLAIN_PIPELINES = {
    "sd": ("StableDiffusionPipeline", {"safety_checker": None, "requires_safety_checker": False}),
    "sdxl": ("StableDiffusionXLPipeline", {"add_watermarker": False}),
}


def plain_pipeline(args: argparse.Namespace, cfg: Any) -> Any:
    """The family's diffusers pipeline `from_pretrained` from the model's folder (a built-in
    model's saved copy), on the device."""
    import diffusers

    class_name, kwargs = PLAIN_PIPELINES["sdxl" if args.model in XL_MODELS else "sd"]
    load = getattr(diffusers, class_name).from_pretrained
    if cfg.model.path:
        return load(cfg.model.path, **kwargs).to(args.device)
    with tempfile.TemporaryDirectory(prefix="dreamsweep-bench-model-") as folder:
        product.save_pipeline(cfg, Path(folder))
        return load(folder, **kwargs).to(args.device)


def eval_plain(args: argparse.Namespace) -> tuple[Unit, dict]:
    """The family's pipeline from the same weights, one `__call__` per image."""
    import diffusers
    import torch

    cfg = product.compose(eval_overrides(args))
    spec, jobs = product.eval_jobs(cfg)
    pipe = plain_pipeline(args, cfg)
    class_name, extra = product.sampler_class_name(spec.scheduler)
    pipe.scheduler = getattr(diffusers, class_name).from_config(pipe.scheduler.config, **extra)
    pipe.set_progress_bar_config(disable=True)
    negative = spec.negative_prompt or None

    def sample() -> list[float]:
        images = []
        with autocast(args):
            for job in jobs:
                generator = torch.Generator().manual_seed(product.job_seed(job))
                images += pipe(
                    job.prompt,
                    negative_prompt=negative,
                    height=spec.resolution,
                    width=spec.resolution,
                    num_inference_steps=spec.num_inference_steps,
                    guidance_scale=spec.guidance_scale,
                    generator=generator,
                ).images
        return _image_means(images)

    return sample, {"images": len(jobs)}


def _image_means(images: list[Any]) -> list[float]:
    """A cheap fingerprint of each image (mean pixel value), to check both sides agree."""
    import numpy as np

    return [round(float(np.asarray(image, dtype=np.float32).mean()), 3) for image in images]


SIDES: dict[str, Callable[[argparse.Namespace], tuple[Unit, dict]]] = {
    "step-ours": step_ours,
    "step-floor": step_floor,
    "eval-ours": eval_ours,
    "eval-plain": eval_plain,
    "step-floor-xl": step_floor_xl,
}


def peak_memory_mb(device: str) -> float:
    """Peak CUDA memory allocated on a GPU, else the peak RSS of this process."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def timed(unit: Unit, device: str) -> tuple[float, Any]:
    """Wall time of one unit; on a GPU after the queued kernels have finished."""
    sync = _cuda_sync if device.startswith("cuda") else lambda: None
    sync()
    started = time.perf_counter()
    value = unit()
    sync()
    return time.perf_counter() - started, value


def _cuda_sync() -> None:
    import torch

    torch.cuda.synchronize()


def protocol_stream() -> TextIO:
    """The original stdout for answers; fd 1 then points at stderr, so no library print can
    break a JSON line."""
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream


def serve(args: argparse.Namespace) -> None:
    out = protocol_stream()
    unit, info = SIDES[args.kind](args)
    print(json.dumps({"ready": True, **info}), file=out)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        seconds, value = timed(unit, args.device)
        print(json.dumps({"seconds": seconds, "value": value}), file=out)
    print(json.dumps({"peak_mb": peak_memory_mb(args.device)}), file=out)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=[*SIDES, "save-tiny"])
    p.add_argument("--size", choices=list(UNET_WIDTHS), default="tiny")
    p.add_argument("--variant", choices=list(STEP_VARIANTS), default="unet")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--model-dir", help="where save-tiny writes the tiny pipeline")
    p.add_argument("--model", choices=MODELS, default="tiny", help="step-ours, *-xl, eval-*")
    p.add_argument("--model-path", help="--model sdxl: a local SDXL diffusers folder")
    return p.parse_args(argv)


def main() -> None:
    args = parse()
    if args.kind == "save-tiny":
        product.save_tiny_pipeline(Path(args.model_dir), args.resolution)
        return
    serve(args)


if __name__ == "__main__":
    main()
