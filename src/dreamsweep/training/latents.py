"""VAE latents of the training images, computed once per run and kept in the shared cache.

Each image is stored as the VAE posterior (mean, std) of each augmentation kept: the crop
(centre, or `RANDOM_CROPS` seeded random crops) times the flip (none, mirrored). A training
step then draws `mean + std * noise` with its own seeded generator. With centre crops this is
exactly the distribution of encoding the image every step; with random crops it is an
approximation: the step draws among RANDOM_CROPS fixed crops per image, not among every
possible crop (enough for 3-30 photos at a few hundred steps, and the VAE runs once).

Each variant also keeps its geometry as SDXL's six micro-conditioning numbers (original height
and width, the crop's top-left in the resized picture, the target size), as diffusers' SDXL
training script computes them (a flip mirrors the crop's left edge).
"""

from __future__ import annotations

import hashlib
import random
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from dreamsweep import cache
from dreamsweep.data.images import hflip, open_rgb, resized_crop, to_tensor
from dreamsweep.tensor_files import save_tensors

RANDOM_CROPS = 4


@dataclass
class LatentBank:
    """mean/std of shape [images, variants, C, H, W] (variants = crops x flips); time_ids
    [images, variants, 6]: original (h, w), crop (top, left), target (h, w) of each variant."""

    mean: torch.Tensor
    std: torch.Tensor
    time_ids: torch.Tensor | None = None

    def time_ids_of(self, index: torch.Tensor, variant: torch.Tensor) -> torch.Tensor:
        if self.time_ids is None:
            raise ValueError("this LatentBank has no time ids (build it with build_latent_bank)")
        return self.time_ids[index, variant]

    def sample(self, index: int, variant: int, generator: torch.Generator) -> torch.Tensor:
        mean, std = self.mean[index, variant], self.std[index, variant]
        return mean + std * torch.randn(mean.shape, generator=generator, dtype=mean.dtype)

    @property
    def num_variants(self) -> int:
        return self.mean.shape[1]


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _augmented_pixels(
    path: Path, resolution: int, center_crop: bool, flip: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The variants' pixels [variants, 3, H, W] and time ids [variants, 6]."""
    image = open_rgb(path)
    rng = random.Random(f"{seed}:{path.name}")
    crops = [
        resized_crop(image, resolution, center_crop, rng)
        for _ in range(1 if center_crop else RANDOM_CROPS)
    ]
    original = (image.height, image.width)
    target = (resolution, resolution)
    tensors = [to_tensor(c[0]) for c in crops]
    ids = [(*original, top, left, *target) for _, top, left, _ in crops]
    if flip:
        tensors += [hflip(t) for t in tensors]
        ids += [
            (*original, top, width - left - resolution, *target) for _, top, left, width in crops
        ]
    return torch.stack(tensors), torch.tensor(ids, dtype=torch.float32)


@torch.no_grad()
def _encode(vae, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    dtype = next(vae.parameters()).dtype
    device = next(vae.parameters()).device
    dist = vae.encode(pixels.to(device, dtype)).latent_dist
    return dist.mean.float().cpu(), dist.std.float().cpu()


def build_latent_bank(
    images: list[Path],
    vae,
    model_fingerprint: str,
    cache_root: Path,
    *,
    resolution: int,
    center_crop: bool,
    flip: bool,
    seed: int,
    log=lambda message: None,
) -> LatentBank:
    """Encode once per (model, images, augmentation) and reuse it across runs of a sweep."""
    spec = {
        "model": model_fingerprint,
        "images": [_file_digest(p) for p in images],
        "resolution": resolution,
        "center_crop": center_crop,
        "random_crops": 1 if center_crop else RANDOM_CROPS,
        "crop_seed": None if center_crop else seed,
        "flip": flip,
        "time_ids": True,  # the file holds each variant's geometry (SDXL's micro-conditioning)
    }
    entry = cache.entry_dir(cache_root, "latents", spec)
    file = entry / "latents.safetensors"
    with cache.locked(entry) if not file.exists() else nullcontext():
        if not file.exists():
            log(f"encoding VAE latents of {len(images)} images into {entry}")
            means, stds, ids = [], [], []
            for p in images:
                pixels, time_ids = _augmented_pixels(p, resolution, center_crop, flip, seed)
                mean, std = _encode(vae, pixels)
                means.append(mean), stds.append(std), ids.append(time_ids)
            tensors = {
                "mean": torch.stack(means).contiguous(),
                "std": torch.stack(stds).contiguous(),
                "time_ids": torch.stack(ids).contiguous(),
            }
            cache.write_spec(entry, spec)
            save_tensors(tensors, file)
    tensors = load_file(str(file))
    return LatentBank(mean=tensors["mean"], std=tensors["std"], time_ids=tensors["time_ids"])
