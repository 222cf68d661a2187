"""The report's "how sure" figure: each close cell's gap to the best, with its paired interval."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from dreamsweep.report.best import BestCard
from dreamsweep.report.figure import Figure, save

COLOURS = {"worse": "0.55", "within noise": "tab:orange"}


def verdict_figure(folder: Path, best: BestCard | None) -> list[Figure]:
    """Gap (best minus cell) with its 95% paired-bootstrap interval for the closest cells; a bar
    that crosses 0 is within noise. P(best) is written beside each cell."""
    rows = [c for c in best.contenders if c.gap is not None] if best else []
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(rows) + 1.4), layout="constrained")
    for y, c in enumerate(rows):
        gap = c.gap
        colour = COLOURS.get(c.verdict, "black")
        ax.errorbar(
            gap.estimate,
            y,
            xerr=[[gap.estimate - gap.low], [gap.high - gap.estimate]],
            fmt="o" if c.verdict == "worse" else "D",
            color=colour,
            capsize=3,
        )
        chance = f"P(best) {c.p_best:.0%}" if c.p_best is not None else ""
        ax.annotate(f"{c.verdict}  {chance}", (gap.high, y), xytext=(6, -3),
                    textcoords="offset points", fontsize=8)  # fmt: skip
    ax.axvline(0.0, color="black", linewidth=0.8)
    labels = [f"{c.row.run} · step {c.row.step} · {c.row.cell}" for c in rows]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("objective gap to the best cell (95% interval)", fontsize=9)
    ax.set_title(
        f"How sure: best = {best.row.run} · step {best.row.step} · {best.row.cell}"
        + (f" (P(best) {best.p_best:.0%})" if best.p_best is not None else ""),
        fontsize=9,
    )
    ax.margins(x=0.25)
    ax.grid(axis="x", alpha=0.3)
    save(fig, folder, "verdicts.png")
    return [
        Figure(
            "verdicts.png",
            "How sure: the closest cells against the best",
            "Each cell's objective gap to the best cell, estimated on the samples they share "
            "(same prompts and seeds), with a 95% paired-bootstrap interval (seeds resampled "
            "within each prompt). An interval that crosses 0 is within noise; P(best) is the "
            "share of resamples in which the cell is the best.",
        )
    ]
