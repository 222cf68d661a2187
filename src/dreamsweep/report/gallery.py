"""The gallery: every prompt x seed of the best cell next to the base model's image of the
same prompt and seed, copied beside the report and shown at a size one can judge."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from dreamsweep.report.best import BestCard
from dreamsweep.report.collect import CellRow, Sweep
from dreamsweep.runs import sample_name

MIN_SHOWN_PX = 256  # small images are scaled up (pixelated) to this width


@dataclass
class Pair:
    prompt: str
    seed: int
    base: str | None  # file inside the report folder
    best: str | None


def _base_cell(sweep: Sweep, best: BestCard) -> CellRow | None:
    return next(
        (c for c in best.run.cells if c.step == 0 and c.sampling == best.row.sampling), None
    )


def gallery(sweep: Sweep, best: BestCard | None, out: Path) -> list[Pair]:
    """Copy the images into `<out>/gallery/` and pair them by prompt and seed."""
    if best is None or not best.row.prompts:
        return []
    base = _base_cell(sweep, best)
    folder = out / "gallery"
    folder.mkdir(parents=True, exist_ok=True)
    prompts = list(dict.fromkeys(best.row.prompts))
    pairs = []
    for p, prompt in enumerate(prompts):
        for seed in sorted(set(best.row.seeds)):
            shown = {}
            for name, row in (("base", base), ("best", best.row)):
                image = row.image(p, seed) if row is not None else None
                if image is not None:
                    target = folder / f"{name}_{sample_name(p, seed)}"
                    shutil.copy(image, target)
                    shown[name] = f"gallery/{target.name}"
            pairs.append(Pair(prompt, seed, shown.get("base"), shown.get("best")))
    return pairs
