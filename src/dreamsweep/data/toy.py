"""Draws the bundled toy subject: a small robot, so data=toy needs no third-party images.

The robot is drawn with PIL shapes only and placed in several poses and backgrounds, so a
DreamBooth run has the variety it expects from real subject photos (one object, many views).
Everything is seeded, so the PNGs are identical on every run.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from dreamsweep import ASSETS_DIR

TOY_SUBJECT_DIR = ASSETS_DIR / "toy_subject"

# Robot drawn on a canvas of ROBOT_W x ROBOT_H units, times SUPERSAMPLE for smooth edges.
ROBOT_W, ROBOT_H = 120, 170
SUPERSAMPLE = 4

RED = (214, 40, 40)
YELLOW = (250, 204, 21)
CYAN = (34, 211, 238)
BLUE = (37, 99, 235)
GREY = (148, 163, 184)
DARK = (30, 30, 40)
WHITE = (245, 245, 245)

# Plain colours and (top, bottom) gradients, cycled so neighbouring images differ.
BACKGROUNDS: list[tuple[tuple[int, int, int], tuple[int, int, int]]] = [
    ((232, 240, 250), (232, 240, 250)),
    ((255, 244, 214), (240, 200, 150)),
    ((210, 235, 215), (210, 235, 215)),
    ((200, 220, 255), (120, 150, 210)),
    ((245, 225, 240), (245, 225, 240)),
    ((235, 235, 235), (170, 170, 170)),
    ((255, 250, 235), (255, 250, 235)),
    ((220, 210, 250), (160, 140, 200)),
]


@dataclass(frozen=True)
class Pose:
    """Where and how the robot sits in one image."""

    height_frac: float  # robot height as a fraction of the image
    angle: float  # degrees, counter-clockwise
    center_x: float  # fraction of image width
    bottom_y: float  # fraction of image height where the feet touch
    floor: bool  # draw a floor line at the feet


def _box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
    """Scale a box from robot units to supersampled pixels."""
    s = SUPERSAMPLE
    return (round(x0 * s), round(y0 * s), round(x1 * s), round(y1 * s))


def draw_robot() -> Image.Image:
    """The robot on a transparent RGBA canvas, feet at the bottom edge."""
    s = SUPERSAMPLE
    canvas = Image.new("RGBA", (ROBOT_W * s, ROBOT_H * s), (0, 0, 0, 0))
    d = ImageDraw.Draw(canvas)
    outline = {"outline": DARK, "width": 2 * s}

    # Antenna: stalk and a red ball on top.
    d.line([_box(60, 10, 60, 30)[:2], _box(60, 10, 60, 30)[2:]], fill=DARK, width=3 * s)
    d.ellipse(_box(53, 3, 67, 17), fill=RED, **outline)
    # Legs and feet.
    d.rectangle(_box(38, 135, 52, 160), fill=GREY, **outline)
    d.rectangle(_box(68, 135, 82, 160), fill=GREY, **outline)
    d.rounded_rectangle(_box(32, 157, 56, 168), radius=3 * s, fill=DARK)
    d.rounded_rectangle(_box(64, 157, 88, 168), radius=3 * s, fill=DARK)
    # Arms with grey hands.
    d.rounded_rectangle(_box(8, 78, 24, 125), radius=5 * s, fill=BLUE, **outline)
    d.rounded_rectangle(_box(96, 78, 112, 125), radius=5 * s, fill=BLUE, **outline)
    d.ellipse(_box(6, 120, 26, 138), fill=GREY, **outline)
    d.ellipse(_box(94, 120, 114, 138), fill=GREY, **outline)
    # Neck and body with a control panel.
    d.rectangle(_box(52, 66, 68, 76), fill=GREY, **outline)
    d.rounded_rectangle(_box(24, 74, 96, 140), radius=8 * s, fill=RED, **outline)
    d.rounded_rectangle(_box(38, 86, 82, 114), radius=4 * s, fill=WHITE, **outline)
    d.ellipse(_box(43, 93, 55, 105), fill=CYAN, **outline)
    d.ellipse(_box(62, 93, 74, 105), fill=YELLOW, **outline)
    d.rectangle(_box(44, 122, 76, 128), fill=DARK)
    # Square yellow head with cyan eyes and a mouth grille.
    d.rectangle(_box(30, 26, 90, 68), fill=YELLOW, **outline)
    d.ellipse(_box(38, 34, 54, 50), fill=CYAN, **outline)
    d.ellipse(_box(66, 34, 82, 50), fill=CYAN, **outline)
    d.ellipse(_box(43, 39, 49, 45), fill=DARK)
    d.ellipse(_box(71, 39, 77, 45), fill=DARK)
    d.rectangle(_box(44, 55, 76, 62), fill=DARK)
    for x in (52, 60, 68):
        d.line([_box(x, 55, x, 62)[:2], _box(x, 55, x, 62)[2:]], fill=GREY, width=s)
    return canvas


def gradient(size: int, top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A vertical top-to-bottom colour gradient (plain when top == bottom)."""
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]
    rows = (1 - t) * np.array(top, np.float32) + t * np.array(bottom, np.float32)
    pixels = np.broadcast_to(rows, (size, size, 3)).round().astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(pixels), "RGB")


def random_pose(rng: np.random.Generator) -> Pose:
    """A varied but always fully visible placement."""
    return Pose(
        height_frac=float(rng.uniform(0.45, 0.8)),
        angle=float(rng.uniform(-12, 12)),
        center_x=float(rng.uniform(0.35, 0.65)),
        bottom_y=float(rng.uniform(0.82, 0.95)),
        floor=bool(rng.random() < 0.5),
    )


def render(robot: Image.Image, pose: Pose, background: Image.Image) -> Image.Image:
    """Scale, rotate and paste the robot onto a copy of the background."""
    size = background.width
    image = background.copy()
    height = round(pose.height_frac * size)
    width = round(height * robot.width / robot.height)
    sprite = robot.resize((width, height), Image.Resampling.LANCZOS)
    sprite = sprite.rotate(pose.angle, resample=Image.Resampling.BICUBIC, expand=True)
    sprite = sprite.crop(sprite.getbbox())  # drop rotation padding so the feet meet the floor
    bottom = min(round(pose.bottom_y * size), size - 2)
    left = round(pose.center_x * size - sprite.width / 2)
    left = max(0, min(left, size - sprite.width))
    top = max(0, bottom - sprite.height)
    if pose.floor:
        floor_y = min(top + sprite.height - 3, size - 1)
        shade = tuple(int(c * 0.8) for c in background.getpixel((0, size - 1)))
        ImageDraw.Draw(image).rectangle((0, floor_y, size, size), fill=shade)
    image.paste(sprite, (left, top), sprite)
    return image


def draw_toy_subject(out_dir: Path, n: int = 6, size: int = 256, seed: int = 0) -> list[Path]:
    """Write toy_00.png ... toy_{n-1}.png into out_dir and return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    offset = random.Random(seed).randrange(len(BACKGROUNDS))
    robot = draw_robot()
    paths = []
    for i in range(n):
        top, bottom = BACKGROUNDS[(i + offset) % len(BACKGROUNDS)]
        image = render(robot, random_pose(rng), gradient(size, top, bottom))
        path = out_dir / f"toy_{i:02d}.png"
        image.save(path, optimize=True)
        paths.append(path)
    return paths


if __name__ == "__main__":
    for written in draw_toy_subject(TOY_SUBJECT_DIR):
        print(written)
