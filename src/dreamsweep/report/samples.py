"""Sample images side by side: one prompt and seed across steps, runs and sampling settings.

The same starting noise is used at every step, so a row shows the model changing (the HF
DreamBooth post's figures), not the noise.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from PIL import Image

from dreamsweep.report.best import BestCard
from dreamsweep.report.collect import CellRow, Sweep
from dreamsweep.report.figure import Figure, legend_name, save

MAX_IMAGE_ROWS = 8


def image_grids(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    """The same prompt and seed across steps, per run and per sampling setting."""
    if best is None or not best.row.prompts:
        return []
    row, seed = best.row, best.row.seeds[0]
    prompt = row.prompts[0]
    figures = []
    ranked = sorted(sweep.runs, key=lambda r: (r.best_objective is None, -(r.best_objective or 0)))
    shown = ranked[:MAX_IMAGE_ROWS]
    top = f" (the top {MAX_IMAGE_ROWS})" if len(ranked) > MAX_IMAGE_ROWS else ""
    across_runs = [(legend_name(sweep, r), r.curve(row.sampling, row.weights)) for r in shown]
    if _draw_grid(across_runs, 0, seed, folder / "samples_runs.png"):
        figures.append(
            Figure(
                "samples_runs.png",
                "Samples across steps and runs",
                f"“{prompt}”, seed {seed}, {row.sampling}, {row.weights} weights (step 0: base "
                f"model). Rows: runs, best first{top}.",
            )
        )
    settings = sorted({(c.sampling, c.weights) for c in best.run.cells if c.step > 0})
    if len(settings) > 1:
        across_settings = [(f"{s} {w}", best.run.curve(s, w)) for s, w in settings]
        if _draw_grid(across_settings, 0, seed, folder / "samples_schedulers.png"):
            figures.append(
                Figure(
                    "samples_schedulers.png",
                    "Samples across steps and sampling settings",
                    f"Best run ({best.run.name}), “{prompt}”, seed {seed}. Rows: scheduler, "
                    "inference steps, guidance and weights; the same starting noise in every cell.",
                )
            )
    return figures


def _draw_grid(
    rows: list[tuple[str, dict[int, CellRow]]], prompt: int, seed: int, file: Path
) -> bool:
    steps = sorted({s for _, cells in rows for s in cells})
    if not steps:
        return False
    fig, axes = plt.subplots(
        len(rows),
        len(steps),
        squeeze=False,
        figsize=(1.4 * len(steps) + 2.2, 1.4 * len(rows) + 0.4),
    )
    for i, (label, cells) in enumerate(rows):
        for j, step in enumerate(steps):
            ax = axes[i][j]
            ax.set_xticks([])
            ax.set_yticks([])
            path = cells[step].image(prompt, seed) if step in cells else None
            if path is not None:
                ax.imshow(Image.open(path).convert("RGB"), interpolation="nearest")
            else:
                ax.text(0.5, 0.5, "—", ha="center", va="center", transform=ax.transAxes)
            if i == 0:
                ax.set_title(f"step {step}", fontsize=8)
            if j == 0:
                ax.set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    save(fig, file.parent, file.name)
    return True
