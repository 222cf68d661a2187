"""Train the toy-world VAE: near-lossless on plain shapes, latents scaled to unit std.

The VAE is trained first and then frozen, so the UNet pretraining sees fixed latents.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from tqdm import tqdm

from dreamsweep.toyworld.augment import autoencoder_batch
from dreamsweep.toyworld.models import Design, build_vae
from dreamsweep.toyworld.world import sample_world, subject_images, to_tensor

KL_WEIGHT = 1e-6  # per latent element: enough to keep latents tame, not enough to blur


@dataclass
class VaeReport:
    psnr_world: float
    psnr_subject: float
    dot_error: float  # mean |rgb error| at the subject's yellow dot, 0-255 scale
    latent_std: float
    scaling_factor: float


def _loss(vae: AutoencoderKL, pixels: torch.Tensor) -> torch.Tensor:
    posterior = vae.encode(pixels).latent_dist
    recon = vae.decode(posterior.sample()).sample
    kl = posterior.kl().mean() / posterior.mean[0].numel()
    return (recon - pixels).abs().mean() + ((recon - pixels) ** 2).mean() + KL_WEIGHT * kl


def train_vae(design: Design, steps: int, seed: int = 0, batch_size: int = 16) -> AutoencoderKL:
    """AdamW 2e-3 with cosine decay over ``steps``; small batches, many steps: minutes."""
    torch.manual_seed(seed)
    vae = build_vae(design)
    _start_nearly_deterministic(vae)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + math.cos(math.pi * s / steps))
    )
    bar = tqdm(range(steps), desc="vae", mininterval=10)
    for step in bar:
        loss = _loss(vae, autoencoder_batch(seed, step, batch_size))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    return vae.eval().requires_grad_(False)


def _start_nearly_deterministic(vae: AutoencoderKL) -> None:
    """Start the posterior log-variance at -8 (std 0.02): at the default 0 the decoder learns
    from latents drowned in unit noise and stays blurry for thousands of steps."""
    with torch.no_grad():
        vae.quant_conv.bias[vae.config.latent_channels :] = -8.0


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b) / 2).pow(2).mean().item()  # [-1, 1] -> [0, 1] scale
    return 10 * math.log10(1 / max(mse, 1e-12))


@torch.no_grad()
def evaluate_vae(vae: AutoencoderKL, seed: int = 123) -> VaeReport:
    """PSNR on held-out world and subject pictures, the yellow-dot error, and the scale factor
    that gives the latents unit std (what SD's 0.18215 does for SD's VAE)."""
    _, images, _ = sample_world(256, seed=seed)
    world = to_tensor(images)
    subject = to_tensor(subject_images(64, seed=seed))
    latents = vae.encode(world).latent_dist.mode()
    recon_w = vae.decode(latents).sample.clamp(-1, 1)
    recon_s = vae.decode(vae.encode(subject).latent_dist.mode()).sample.clamp(-1, 1)
    std = latents.std().item()
    dot = _dot_error(subject, recon_s)
    return VaeReport(_psnr(recon_w, world), _psnr(recon_s, subject), dot, std, 1.0 / std)


def _dot_error(subject: torch.Tensor, recon: torch.Tensor) -> float:
    """Error where the original is yellow (the dot): the detail a blurry VAE loses first."""
    yellow = torch.tensor([245, 205, 20]).view(1, 3, 1, 1) / 127.5 - 1
    mask = ((subject - yellow).abs().amax(dim=1, keepdim=True) < 0.1).float()
    err = ((recon - subject).abs() * mask).sum() / (mask.sum() * 3).clamp(min=1)
    return err.item() * 127.5


def save_vae(vae: AutoencoderKL, report: VaeReport, folder: Path) -> None:
    vae.register_to_config(scaling_factor=report.scaling_factor)
    vae.save_pretrained(folder)


def run(design: Design, folder: Path, minutes: float, seed: int = 0) -> VaeReport:
    """Time the step, train for about ``minutes``, evaluate and save."""
    steps = max(50, int(minutes * 60 / _seconds_per_step(design, seed)))
    vae = train_vae(design, steps=steps, seed=seed)
    report = evaluate_vae(vae)
    save_vae(vae, report, folder)
    return report


def _seconds_per_step(design: Design, seed: int, warmup: int = 2, timed: int = 5) -> float:
    """Time a few steps after the first (slow) ones, so the step budget fits ``minutes``."""
    probe = build_vae(design)
    for i in range(warmup + timed):
        if i == warmup:
            start = time.time()
        _loss(probe, autoencoder_batch(seed, i, 16)).backward()
    return max((time.time() - start) / timed * 1.1, 1e-3)  # +10% for the optimizer step
