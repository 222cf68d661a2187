"""What every report figure shares: the Figure record, saving, and styles that read in grey.

Runs are told apart by marker and line style as well as colour, so a figure printed or viewed
without colour still says which line is which.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

from dreamsweep.report.collect import Run, Sweep  # noqa: E402

MARKERS = "osD^vP*Xph<>"
LINES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class Figure:
    file: str  # name inside figures/
    title: str
    caption: str


def style(index: int) -> dict:
    """Marker and line style of the index-th run."""
    return {
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": LINES[(index // len(MARKERS) + index) % len(LINES)],
        "markersize": 5,
    }


def save(fig, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / name, dpi=110, bbox_inches="tight")
    plt.close(fig)


def legend_name(sweep: Sweep, run: Run) -> str:
    """`2: optim.lr=0.001 prior.enabled=true (pruned)`."""
    state = "" if run.state == "complete" else f" ({run.state})"
    return f"{run.name}: {sweep.label(run)}{state}" if sweep.varying else run.name + state
