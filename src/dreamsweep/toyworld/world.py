"""The toy world: seeded, captioned 32x32 pictures of one coloured shape on a plain background.

A world this simple lets a tiny Stable Diffusion learn real text conditioning on a CPU, so a
DreamBooth run on top of it has something to learn and something to forget. Every picture is
drawn 4x supersampled with PIL and box-downsampled, so edges are anti-aliased like a photo.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

SIZE = 32
SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "star", "ring")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 160, 50),
    "blue": (40, 70, 225),
    "yellow": (245, 205, 20),
    "purple": (145, 55, 200),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (244, 244, 244),
    "black": (24, 24, 24),
    "light blue": (130, 180, 240),
    "gray": (128, 128, 128),
}
# A blue shape on a light-blue background would be hard to see, so the world never draws one.
FORBIDDEN = {("blue", "light blue")}

STAR_INNER = 0.42  # inner/outer radius of a star
RING_WIDTH = 0.38  # ring thickness as a fraction of its radius
SUBJECT_DOT = 0.36  # radius of the subject's yellow dot as a fraction of the star radius

INSTANCE_PROMPT = "a sks toy"

# Caption kinds and their share of the training data; "" is the caption dropout that
# classifier-free guidance needs.
CAPTION_MIX: dict[str, float] = {
    "a {colour} {shape} on a {bg} background": 0.40,
    "a {colour} {shape}": 0.15,
    "a {shape} on a {bg} background": 0.08,
    "a {shape}": 0.05,
    "a toy": 0.06,
    "a toy on a {bg} background": 0.06,
    "a {colour} toy": 0.05,
    "a {colour} toy on a {bg} background": 0.05,
    "": 0.10,
}


@dataclass(frozen=True)
class Scene:
    """What one picture shows; the caption and the pixels are both derived from it."""

    shape: str  # one of SHAPES, or "subject"
    colour: str
    background: str
    cx: float  # centre in 32x32 pixel units
    cy: float
    radius: float  # circumradius in 32x32 pixel units
    rotation: float  # degrees

    @property
    def is_subject(self) -> bool:
        return self.shape == "subject"


def caption(scene: Scene, template: str) -> str:
    """Fill a CAPTION_MIX template from the scene, so the text always matches the pixels."""
    return template.format(shape=scene.shape, colour=scene.colour, bg=scene.background)


def random_scene(rng: np.random.Generator) -> Scene:
    """A uniformly random world scene; never blue on light blue, never the subject."""
    while True:
        colour = str(rng.choice(list(COLOURS)))
        background = str(rng.choice(list(BACKGROUNDS)))
        if (colour, background) not in FORBIDDEN:
            break
    return _place(rng, str(rng.choice(SHAPES)), colour, background)


def _place(rng: np.random.Generator, shape: str, colour: str, background: str) -> Scene:
    radius = float(rng.uniform(6.0, 12.0))
    margin = radius + 1.0
    cx, cy = (float(rng.uniform(margin, SIZE - margin)) for _ in range(2))
    return Scene(shape, colour, background, cx, cy, radius, float(rng.uniform(0.0, 360.0)))


def subject_scene(rng: np.random.Generator, background: str = "white") -> Scene:
    """The DreamBooth subject: a green star with a yellow dot in its centre."""
    return _place(rng, "subject", "green", background)


def _polygon(scene: Scene, points: int, radii: tuple[float, ...], scale: float) -> list:
    """Vertices of a regular (star) polygon around the scene centre, in supersampled pixels."""
    out = []
    step = 2 * math.pi / (points * len(radii))
    start = math.radians(scene.rotation) - math.pi / 2
    for i in range(points * len(radii)):
        r = radii[i % len(radii)] * scene.radius * scale
        angle = start + i * step
        out.append((scene.cx * scale + r * math.cos(angle), scene.cy * scale + r * math.sin(angle)))
    return out


def _disc(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill: tuple) -> None:
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)


def draw(scene: Scene, bg_rgb: tuple | None = None, fill_rgb: tuple | None = None) -> Image.Image:
    """Render the scene at 4x and box-downsample to 32x32 (anti-aliased edges).

    ``bg_rgb``/``fill_rgb`` override the palette: off-palette pictures make the VAE and the
    oracle robust to the imperfect colours a generator produces."""
    s = SUPERSAMPLE
    background = bg_rgb or BACKGROUNDS[scene.background]
    image = Image.new("RGB", (SIZE * s, SIZE * s), background)
    pen = ImageDraw.Draw(image)
    fill = fill_rgb or COLOURS[scene.colour]
    cx, cy, r = scene.cx * s, scene.cy * s, scene.radius * s
    if scene.shape == "circle":
        _disc(pen, cx, cy, r, fill)
    elif scene.shape == "ring":
        _disc(pen, cx, cy, r, fill)
        _disc(pen, cx, cy, r * (1 - RING_WIDTH), background)
    elif scene.shape == "square":
        pen.polygon(_polygon(scene, 4, (1.0,), s), fill=fill)
    elif scene.shape == "triangle":
        pen.polygon(_polygon(scene, 3, (1.0,), s), fill=fill)
    elif scene.shape in ("star", "subject"):
        pen.polygon(_polygon(scene, 5, (1.0, STAR_INNER), s), fill=fill)
        if scene.is_subject:
            _disc(pen, cx, cy, r * SUBJECT_DOT, COLOURS["yellow"])
    else:
        raise ValueError(f"unknown shape {scene.shape!r}")
    return image.reduce(s)


def shape_area(scene: Scene) -> float:
    """The analytic area in 32x32 pixels; lets tests check a drawing against its caption."""
    r = scene.radius
    if scene.shape == "circle":
        return math.pi * r * r
    if scene.shape == "ring":
        return math.pi * r * r * (1 - (1 - RING_WIDTH) ** 2)
    if scene.shape == "square":
        return 2 * r * r
    if scene.shape == "triangle":
        return 3 * math.sqrt(3) / 4 * r * r
    if scene.shape in ("star", "subject"):
        return 5 * r * r * STAR_INNER * math.sin(2 * math.pi / 10)
    raise ValueError(f"unknown shape {scene.shape!r}")


def random_caption(rng: np.random.Generator, scene: Scene) -> str:
    """A caption drawn from CAPTION_MIX for this scene."""
    templates = list(CAPTION_MIX)
    weights = np.array(list(CAPTION_MIX.values()))
    return caption(scene, templates[rng.choice(len(templates), p=weights / weights.sum())])


def sample_world(n: int, seed: int) -> tuple[list[Scene], list[Image.Image], list[str]]:
    """``n`` captioned world pictures, fully determined by ``seed``."""
    rng = np.random.default_rng(seed)
    scenes = [random_scene(rng) for _ in range(n)]
    captions = [random_caption(rng, scene) for scene in scenes]
    return scenes, [draw(scene) for scene in scenes], captions


def subject_images(n: int = 5, seed: int = 0, background: str = "white") -> list[Image.Image]:
    """The DreamBooth instance images: the subject at random positions, sizes and rotations."""
    rng = np.random.default_rng([seed, 7])
    return [draw(subject_scene(rng, background)) for _ in range(n)]


def to_tensor(images: list[Image.Image]) -> torch.Tensor:
    """PIL images -> float tensor [N, 3, H, W] in [-1, 1], the range SD's VAE expects."""
    array = np.stack([np.asarray(image, dtype=np.float32) for image in images])
    return torch.from_numpy(array).permute(0, 3, 1, 2) / 127.5 - 1.0


@dataclass(frozen=True)
class WorldBatch:
    pixels: torch.Tensor  # [B, 3, 32, 32] in [-1, 1]
    captions: list[str]
    scenes: list[Scene]


def world_batch(seed: int, step: int, batch_size: int) -> WorldBatch:
    """Training batch number ``step``: the same for the same (seed, step), so a resumed run
    sees exactly the data a run without interruption would have seen."""
    scenes, images, captions = sample_world(batch_size, seed=hash_seed(seed, step))
    return WorldBatch(to_tensor(images), captions, scenes)


def hash_seed(*parts: int) -> int:
    """One 63-bit seed from several integers (seed, step, ...), stable across processes."""
    return int(np.random.SeedSequence(list(parts)).generate_state(2, np.uint64)[0] >> 1)
