"""The report's score figures: overfitting curves, subject vs prompt fidelity, a heatmap.

Each function takes the collected sweep and a folder and returns the figures it wrote (none
when the sweep has nothing to show for it); `all_figures` draws every one, samples and study
figures included.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib.pyplot as plt

from dreamsweep.metrics.objective import PROMPT_KEYS, SUBJECT_KEYS
from dreamsweep.metrics.registry import Score, registered_scores
from dreamsweep.report.best import BestCard, candidates
from dreamsweep.report.collect import CellRow, Sweep, format_value
from dreamsweep.report.figure import MARKERS, Figure, legend_name, save, style
from dreamsweep.report.samples import image_grids
from dreamsweep.report.study_plots import optuna_figures
from dreamsweep.report.val_plots import val_loss_figure
from dreamsweep.report.verdict_plots import verdict_figure


def curve_scores() -> dict[str, Score]:
    """What is drawn as curves, in the order a reader wants them: the objective, then every
    registered score (metrics/registry.py); only those a sweep has are drawn."""
    return {"objective": Score("objective", "objective", True), **registered_scores()}


MAX_LINES = 10  # more runs than this: grey lines, the best run in black


def _value(row: CellRow, metric: str) -> float | None:
    return row.objective if metric == "objective" else row.scores.get(metric)


def curves(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    """Score vs step, one line per run, one panel per sampling setting x weights; every line
    starts from the base model (step 0) under the same sampling setting."""
    facets = sorted({(c.sampling, c.weights) for c in sweep.cells if c.step > 0})
    figures = []
    for metric, score in curve_scores().items():
        title = score.label
        if not facets or not any(_value(c, metric) is not None for c in sweep.cells):
            continue
        cols = 2 if len(facets) == 4 else min(len(facets), 3)
        rows = -(-len(facets) // cols)
        fig, axes = plt.subplots(
            rows,
            cols,
            figsize=(4.2 * cols, 3.0 * rows + 0.8),
            squeeze=False,
            sharey=True,
            layout="constrained",
        )
        for ax, (sampling, weights) in zip(axes.flat, facets, strict=False):
            _curve_panel(ax, sweep, metric, sampling, weights, best)
            ax.set_title(f"{sampling}, {weights} weights", fontsize=9)
        for ax in list(axes.flat)[len(facets) :]:
            ax.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        if handles:
            fig.legend(
                handles, labels, loc="outside lower center", ncol=2, fontsize=8, frameon=False
            )
        fig.suptitle(f"{title} vs training step", fontsize=11)
        name = f"curves_{metric}.png"
        save(fig, folder, name)
        figures.append(
            Figure(
                name,
                f"Overfitting curves: {title}",
                f"{title} at every evaluated step, one line per run; step 0 is the base model; "
                f"{'higher' if score.higher_is_better else 'lower'} is better. "
                "Error bars: 95% bootstrap intervals over seeds within each prompt.",
            )
        )
    return figures


def _interval(row: CellRow, metric: str) -> tuple[float, float] | None:
    return row.intervals.get(metric)


def phase_boundary(config: dict) -> int | None:
    """The last step of a pivotal run's textual inversion (its curve's dotted line)."""
    method = config.get("method") or {}
    return method.get("ti_steps") if method.get("name") == "pivotal" else None


def _curve_panel(ax, sweep: Sweep, metric: str, sampling: str, weights: str, best) -> None:
    many = len(sweep.runs) > MAX_LINES
    for index, run in enumerate(sweep.runs):
        points = [
            (step, _value(c, metric), _interval(c, metric))
            for step, c in run.curve(sampling, weights).items()
            if _value(c, metric) is not None
        ]
        if not points:
            continue
        steps, values, intervals = zip(*points, strict=True)
        is_best = best is not None and best.run is run
        look = style(index)
        if many:
            look = (
                {"color": "black", "linewidth": 2, **look}
                if is_best
                else {"color": "0.7", "linewidth": 0.8, "marker": ".", "linestyle": "-"}
            )
        label = None if many and not is_best else legend_name(sweep, run)
        yerr = None
        if any(i is not None for i in intervals):
            pairs = list(zip(values, intervals, strict=True))
            below = [max(v - i[0], 0.0) if i else 0.0 for v, i in pairs]
            above = [max(i[1] - v, 0.0) if i else 0.0 for v, i in pairs]
            yerr = [below, above]
        ax.errorbar(steps, values, yerr=yerr, label=label, capsize=2, elinewidth=0.7, **look)
        if (boundary := phase_boundary(run.config)) is not None:
            ax.axvline(boundary, color="0.5", linestyle=":", linewidth=0.8)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def pareto(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    """Subject fidelity vs prompt fidelity of every trained cell, with the Pareto front."""

    def present(keys: tuple[str, ...]) -> str | None:
        return next(
            (k for k in keys if any(c.scores.get(k) is not None for c in sweep.cells)), None
        )

    subject, prompt = present((*SUBJECT_KEYS, "identity")), present(PROMPT_KEYS)
    cells = [
        c
        for c in candidates(sweep)
        if subject and prompt and None not in (c.scores.get(subject), c.scores.get(prompt))
    ]
    if not cells:
        return []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for index, run in enumerate(sweep.runs):
        mine = [c for c in cells if c.run == run.name]
        if mine:
            ax.scatter(
                [c.scores[subject] for c in mine],
                [c.scores[prompt] for c in mine],
                marker=MARKERS[index % len(MARKERS)],
                facecolors="none",
                edgecolors=f"C{index % 10}",
                label=legend_name(sweep, run),
            )
    front = pareto_front([(c.scores[subject], c.scores[prompt]) for c in cells])
    xs, ys = zip(*front, strict=True)
    ax.step(xs, ys, where="post", color="black", linewidth=1, label="Pareto front")
    if best is not None and best.row in cells:
        ax.scatter(
            [best.row.scores[subject]],
            [best.row.scores[prompt]],
            marker="*",
            s=220,
            color="black",
            label="best objective",
            zorder=5,
        )
    ax.set_xlabel(f"subject fidelity ({subject})")
    ax.set_ylabel(f"prompt fidelity ({prompt})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    save(fig, folder, "pareto.png")
    return [
        Figure(
            "pareto.png",
            "Subject fidelity vs prompt fidelity",
            "Every trained cell; cells on the front are not beaten on both at once. "
            "Overfitting moves cells right (closer to the photos) and down (ignoring the "
            "prompt).",
        )
    ]


def pareto_front(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both coordinates (maximising), by descending x."""
    front, best_y = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (-p[0], -p[1])):
        if y > best_y:
            front.append((x, y))
            best_y = y
    return sorted(front)


def heatmap(sweep: Sweep, folder: Path) -> list[Figure]:
    """The best objective over a two-axis grid: two training settings; one setting x step;
    or, for a single run, sampling setting x step. Sparse tables (searches) are left out."""
    varying = sweep.varying
    cells = candidates(sweep)
    if not cells or len(varying) > 2:
        return []
    if len(varying) == 2:
        axes = (varying[0], varying[1])
        key = lambda c: tuple(format_value(sweep.run(c.run).setting(k)) for k in axes)  # noqa: E731
    elif len(varying) == 1:
        axes = (varying[0], "step")
        key = lambda c: (format_value(sweep.run(c.run).setting(axes[0])), c.step)  # noqa: E731
    else:
        axes = ("sampling setting", "step")
        key = lambda c: (f"{c.sampling} {c.weights}", c.step)  # noqa: E731
    table: dict[tuple, float] = {}
    for c in cells:
        k = key(c)
        table[k] = max(table.get(k, float("-inf")), c.objective)
    rows = sorted({k[0] for k in table}, key=_sort_key)
    cols = sorted({k[1] for k in table}, key=_sort_key)
    if (len(rows) < 2 and len(cols) < 2) or len(table) <= 0.5 * len(rows) * len(cols):
        return []  # not a grid: e.g. a continuous Optuna parameter, every value once
    grid = [[table.get((r, c), float("nan")) for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(1.3 * len(cols) + 2.5, 0.6 * len(rows) + 2))
    image = ax.imshow(grid, cmap="Greys", aspect="auto")
    for (i, j), value in (
        (ij, grid[ij[0]][ij[1]]) for ij in itertools.product(range(len(rows)), range(len(cols)))
    ):
        if value == value:  # not NaN
            shade = image.norm(value) > 0.5
            ax.text(
                j,
                i,
                f"{value:.3f}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if shade else "black",
            )
    ax.set_xticks(range(len(cols)), [str(c) for c in cols], fontsize=8)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows], fontsize=8)
    ax.set_xlabel(axes[1])
    ax.set_ylabel(axes[0])
    fig.colorbar(image, ax=ax, label="best objective")
    ax.set_title("best objective (over the other axes)", fontsize=10)
    save(fig, folder, "heatmap.png")
    return [
        Figure(
            "heatmap.png",
            f"Objective: {axes[0]} x {axes[1]}",
            "The best objective of each grid point, the maximum over the axes not shown.",
        )
    ]


def _sort_key(value) -> tuple:
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


def all_figures(
    sweep: Sweep, folder: Path, best: BestCard | None
) -> tuple[list[Figure], list[str]]:
    figures = verdict_figure(folder, best) + curves(sweep, folder, best)
    figures += val_loss_figure(sweep, folder, best)
    figures += pareto(sweep, folder, best) + heatmap(sweep, folder)
    figures += image_grids(sweep, folder, best)
    study_figures, notes = optuna_figures(sweep, folder)
    return figures + study_figures, notes
