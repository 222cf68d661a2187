"""Picture streams beyond the plain world: subject mixes and off-palette colours.

Generators never hit the palette exactly, so the VAE and the oracle also see random
background and shape colours; the oracle sees noise, blur and colour shifts too.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageFilter

from dreamsweep.toyworld.world import Scene, draw, random_scene, subject_scene, to_tensor


def _random_rgb(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, size=3))


def mixed_scene(rng: np.random.Generator, p_subject: float, bg: str = "white") -> Scene:
    """A world scene, or with probability ``p_subject`` the subject on a random background."""
    if rng.random() < p_subject:
        return subject_scene(rng, str(rng.choice(["white", "black", "light blue", "gray"])))
    return random_scene(rng)


def draw_varied(
    rng: np.random.Generator, scene: Scene, p_off_bg: float, p_off_fill: float = 0.0
) -> Image.Image:
    """Draw with a random off-palette background and/or fill colour some of the time."""
    bg = _random_rgb(rng) if rng.random() < p_off_bg else None
    fill = _random_rgb(rng) if rng.random() < p_off_fill else None
    return draw(scene, bg_rgb=bg, fill_rgb=fill)


def degrade(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """Blur, colour shift and pixel noise like a diffusion sample's imperfections."""
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.0))))
    array = np.asarray(image, dtype=np.float32)
    if rng.random() < 0.5:
        array = array + rng.normal(0, 12, size=3)  # global colour cast
    if rng.random() < 0.6:
        array = array + rng.normal(0, rng.uniform(2, 14), size=array.shape)
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def autoencoder_batch(seed: int, step: int, batch_size: int) -> torch.Tensor:
    """VAE training pictures: world, 20% subject, 30% off-palette colours."""
    rng = np.random.default_rng([seed, step])
    images = [
        draw_varied(rng, mixed_scene(rng, 0.2), p_off_bg=0.3, p_off_fill=0.3)
        for _ in range(batch_size)
    ]
    return to_tensor(images)
