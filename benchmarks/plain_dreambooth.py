"""A plain DreamBooth script, the start-up baseline of run.py: load, one step, save.

    python benchmarks/plain_dreambooth.py --model DIR --images DIR --out DIR

What diffusers' examples/dreambooth/train_dreambooth.py does for one step, without its
options: load the pipeline, encode the subject's images with the VAE, train the UNet and the
text encoder for one AdamW step on one image, save the pipeline. It imports nothing from
DreamSweep, so `python train.py ... train.max_steps=1` can be timed against it.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionPipeline
from PIL import Image


def load_images(folder: Path, resolution: int) -> torch.Tensor:
    """Centre-cropped, resized images in [-1, 1], as train_dreambooth.py's transforms."""
    tensors = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg")):
        image = Image.open(path).convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side)).resize((resolution,) * 2)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        tensors.append(torch.from_numpy(array).permute(2, 0, 1))
    return torch.stack(tensors)


def mixed_precision(device: str, precision: str) -> contextlib.AbstractContextManager:
    if precision == "no":
        return contextlib.nullcontext()
    return torch.autocast(device, dtype=torch.float16 if precision == "fp16" else torch.bfloat16)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a diffusers Stable Diffusion folder")
    p.add_argument("--images", required=True, type=Path, help="the subject's images")
    p.add_argument("--out", required=True, help="where the trained pipeline is saved")
    p.add_argument("--prompt", default="a photo of sks toy")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=["no", "fp16", "bf16"], default="no")
    args = p.parse_args()

    torch.manual_seed(0)
    pipe = StableDiffusionPipeline.from_pretrained(
        args.model, safety_checker=None, requires_safety_checker=False
    ).to(args.device)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    noise_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    vae.requires_grad_(False)
    with torch.no_grad():
        pixels = load_images(args.images, args.resolution).to(args.device)
        latents = vae.encode(pixels).latent_dist.sample() * vae.config.scaling_factor
    ids = tokenizer(
        [args.prompt],
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids.to(args.device)

    unet.train()
    text_encoder.train()
    params = list(unet.parameters()) + list(text_encoder.parameters())
    optimizer = torch.optim.AdamW(params, lr=5e-6, weight_decay=0.01)
    latent = latents[:1]
    noise = torch.randn_like(latent)
    timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (1,))
    noisy = noise_scheduler.add_noise(latent, noise, timesteps.to(args.device))
    with mixed_precision(args.device, args.precision):
        pred = unet(noisy, timesteps.to(args.device), text_encoder(ids)[0]).sample
    F.mse_loss(pred.float(), noise).backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)

    pipe.save_pretrained(args.out)


if __name__ == "__main__":
    main()
