"""The validation-loss figure: the denoising loss at fixed timesteps and noise per run, one
panel per set (training photos, held-out and trained-on class images, held-out photos); it
turns up where a run starts to overfit, without any sampling (training/val_loss.py)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from dreamsweep.report.best import BestCard
from dreamsweep.report.collect import Run, Sweep
from dreamsweep.report.figure import Figure, legend_name, save, style

SETS = {
    "instance": "training photos",
    "class": "held-out class images",
    "class_train": "class images trained on (prior)",
    "held_out": "held-out photos (eval.val_dir)",
}


def val_curve(run: Run, name: str) -> dict[int, float]:
    """Step -> loss of one set, with the run's EMA weights when it has them, else raw; step 0
    is the base model."""
    kinds = {r["weights"] for r in run.val}
    weights = "ema" if "ema" in kinds else "raw"
    key = f"val/{name}_loss"
    return {
        r["step"]: r[key]
        for r in sorted(run.val, key=lambda r: r["step"])
        if key in r and r["weights"] in (weights, "base")
    }


def val_loss_figure(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    present = [s for s in SETS if any(val_curve(r, s) for r in sweep.runs)]
    if not present:
        return []
    fig, axes = plt.subplots(
        1, len(present), figsize=(4.2 * len(present), 3.6), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes.flat, present, strict=True):
        for index, run in enumerate(sweep.runs):
            curve = val_curve(run, name)
            if curve:
                look = style(index)
                if best is not None and best.run is run:
                    look = {**look, "linewidth": 2.2}
                ax.plot(list(curve), list(curve.values()), label=legend_name(sweep, run), **look)
        ax.set_title(SETS[name], fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("validation loss (fixed timesteps and noise) vs training step", fontsize=11)
    save(fig, folder, "val_loss.png")
    return [
        Figure(
            "val_loss.png",
            "Validation loss",
            "The denoising loss at 8 fixed timesteps with fixed noise (EMA weights when the run "
            "has them), exactly repeatable across steps and runs: falling on the training photos "
            "while rising on the held-out class images or photos is overfitting; the class "
            "images trained on (prior preservation) falling below the held-out ones is the "
            "prior set memorised.",
        )
    ]
