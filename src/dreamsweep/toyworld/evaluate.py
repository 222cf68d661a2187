"""Oracle-scored checks of a toy-world pipeline: does it draw what the prompt asks for?"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import product

from diffusers import StableDiffusionPipeline
from PIL import Image

from dreamsweep.toyworld.oracle import Oracle, score_images
from dreamsweep.toyworld.pipeline import sample
from dreamsweep.toyworld.world import BACKGROUNDS, COLOURS, FORBIDDEN, SHAPES


@dataclass(frozen=True)
class PromptSpec:
    shape: str
    colour: str
    background: str

    @property
    def prompt(self) -> str:
        return f"a {self.colour} {self.shape} on a {self.background} background"


@dataclass
class SheetResult:
    shape: float
    colour: float
    background: float
    all_three: float
    n: int
    images: list[Image.Image]


def full_prompts() -> list[PromptSpec]:
    """Every shape x colour x background the world draws (95 prompts)."""
    return [
        PromptSpec(s, c, b)
        for s, c, b in product(SHAPES, COLOURS, BACKGROUNDS)
        if (c, b) not in FORBIDDEN
    ]


def contact_sheet(
    pipe: StableDiffusionPipeline,
    oracle: Oracle,
    specs: list[PromptSpec] | None = None,
    seed: int = 0,
    batch: int = 24,
    steps: int = 20,
    cfg: float = 3.0,
) -> SheetResult:
    """Sample one picture per prompt (DDIM 20, CFG 3) and score it with the oracle."""
    specs = specs or full_prompts()
    images: list[Image.Image] = []
    for start in range(0, len(specs), batch):
        chunk = specs[start : start + batch]
        images += sample(pipe, [s.prompt for s in chunk], seed=seed + start, steps=steps, cfg=cfg)
    scores = score_images(oracle, images)
    hits = [
        (
            scores.shape[i] == sp.shape,
            scores.colour[i] == sp.colour,
            scores.background[i] == sp.background,
        )
        for i, sp in enumerate(specs)
    ]
    n = len(hits)
    return SheetResult(
        shape=sum(h[0] for h in hits) / n,
        colour=sum(h[1] for h in hits) / n,
        background=sum(h[2] for h in hits) / n,
        all_three=sum(all(h) for h in hits) / n,
        n=n,
        images=images,
    )


def grid(images: list[Image.Image], columns: int = 19, zoom: int = 3) -> Image.Image:
    """Tile images into one picture for a human look."""
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    sheet = Image.new("RGB", (columns * (w + 2), rows * (h + 2)), (255, 255, 255))
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * (w + 2), (i // columns) * (h + 2)))
    return sheet.resize((sheet.width * zoom, sheet.height * zoom), Image.NEAREST)
