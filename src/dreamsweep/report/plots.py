"""The report's figures (matplotlib, PNG), each readable without colour.

Runs are told apart by marker and line style as well as colour; values are printed in heatmap
cells. Every function takes the collected sweep and a folder and returns the figures it wrote
(none when the sweep has nothing to show for it).
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from dreamsweep.report.best import (  # noqa: E402
    BestCard,
    candidates,
    objective_per_prompt,
    standard_error,
)
from dreamsweep.report.collect import CellRow, Run, Sweep, format_value  # noqa: E402

# Scores drawn as curves, in the order a reader wants them; only those a sweep has are drawn.
CURVES = {
    "objective": "objective",
    "dino": "DINO (subject fidelity)",
    "clip_i": "CLIP-I (subject fidelity)",
    "clip_t": "CLIP-T (prompt fidelity)",
    "identity": "face identity",
    "face_detection_rate": "face detection rate",
    "diversity": "diversity",
    "prior_drift": "prior drift",
    "pres": "PRES",
    "memorization": "memorization (mean)",
}
MARKERS = "osD^vP*Xph<>"
LINES = ("-", "--", ":", "-.")
MAX_LINES = 10  # more runs than this: grey lines, the best run in black
MAX_IMAGE_ROWS = 8


@dataclass(frozen=True)
class Figure:
    file: str  # name inside figures/
    title: str
    caption: str


def _style(index: int) -> dict:
    return {
        "marker": MARKERS[index % len(MARKERS)],
        "linestyle": LINES[(index // len(MARKERS) + index) % len(LINES)],
        "markersize": 5,
    }


def _save(fig, folder: Path, name: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fig.savefig(folder / name, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _value(row: CellRow, metric: str) -> float | None:
    return row.objective if metric == "objective" else row.scores.get(metric)


def _legend_name(sweep: Sweep, run: Run) -> str:
    state = "" if run.state == "complete" else f" ({run.state})"
    return f"{run.name}: {sweep.label(run)}{state}" if sweep.varying else run.name + state


def curves(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    """Score vs step, one line per run, one panel per sampling setting x weights; every line
    starts from the base model (step 0) under the same sampling setting."""
    facets = sorted({(c.sampling, c.weights) for c in sweep.cells if c.step > 0})
    figures = []
    for metric, title in CURVES.items():
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
        _save(fig, folder, name)
        figures.append(
            Figure(
                name,
                f"Overfitting curves: {title}",
                f"{title} at every evaluated step, one line per run; step 0 is the base model. "
                "Error bars: standard error across prompts.",
            )
        )
    return figures


def _error(run: Run, row: CellRow, metric: str) -> float | None:
    if metric == "objective":
        return standard_error(objective_per_prompt(row, run))
    return row.scores.get(f"{metric}_sem")


def _curve_panel(ax, sweep: Sweep, metric: str, sampling: str, weights: str, best) -> None:
    many = len(sweep.runs) > MAX_LINES
    for index, run in enumerate(sweep.runs):
        points = sorted(
            (c.step, _value(c, metric), _error(run, c, metric))
            for c in run.cells
            if c.sampling == sampling
            and (c.weights == weights or c.step == 0)
            and _value(c, metric) is not None
        )
        if not points:
            continue
        steps, values, errors = zip(*points, strict=True)
        is_best = best is not None and best.run is run
        style = _style(index)
        if many:
            style = (
                {"color": "black", "linewidth": 2, **style}
                if is_best
                else {"color": "0.7", "linewidth": 0.8, "marker": ".", "linestyle": "-"}
            )
        label = None if many and not is_best else _legend_name(sweep, run)
        yerr = [e or 0.0 for e in errors] if any(e is not None for e in errors) else None
        ax.errorbar(steps, values, yerr=yerr, label=label, capsize=2, elinewidth=0.7, **style)
    ax.set_xlabel("step", fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(alpha=0.3)


def pareto(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    """Subject fidelity vs prompt fidelity of every trained cell, with the Pareto front."""
    subject = next(
        (
            k
            for k in ("dino", "clip_i", "identity")
            if any(c.scores.get(k) is not None for c in sweep.cells)
        ),
        None,
    )
    cells = [
        c
        for c in candidates(sweep)
        if subject and c.scores.get(subject) is not None and c.scores.get("clip_t") is not None
    ]
    if not cells:
        return []
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for index, run in enumerate(sweep.runs):
        mine = [c for c in cells if c.run == run.name]
        if mine:
            ax.scatter(
                [c.scores[subject] for c in mine],
                [c.scores["clip_t"] for c in mine],
                marker=MARKERS[index % len(MARKERS)],
                facecolors="none",
                edgecolors=f"C{index % 10}",
                label=_legend_name(sweep, run),
            )
    front = pareto_front([(c.scores[subject], c.scores["clip_t"]) for c in cells])
    xs, ys = zip(*front, strict=True)
    ax.step(xs, ys, where="post", color="black", linewidth=1, label="Pareto front")
    if best is not None and best.row in cells:
        ax.scatter(
            [best.row.scores[subject]],
            [best.row.scores["clip_t"]],
            marker="*",
            s=220,
            color="black",
            label="best objective",
            zorder=5,
        )
    ax.set_xlabel(f"subject fidelity ({subject})")
    ax.set_ylabel("prompt fidelity (clip_t)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    _save(fig, folder, "pareto.png")
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
    _save(fig, folder, "heatmap.png")
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


def image_grids(sweep: Sweep, folder: Path, best: BestCard | None) -> list[Figure]:
    """The same prompt and seed across steps, per run and per sampling setting."""
    if best is None or not best.row.prompts:
        return []
    row, seed = best.row, best.row.seeds[0]
    prompt = row.prompts[0]
    figures = []
    ranked = sorted(
        sweep.runs,
        key=lambda r: (
            -max(
                (c.objective for c in r.cells if c.objective is not None and c.step > 0),
                default=-1e9,
            )
        ),
    )
    shown = ranked[:MAX_IMAGE_ROWS]
    top = f" (the top {MAX_IMAGE_ROWS})" if len(ranked) > MAX_IMAGE_ROWS else ""
    across_runs = [
        (_legend_name(sweep, r), _cells_by_step(r, row.sampling, row.weights)) for r in shown
    ]
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
        across_settings = [(f"{s} {w}", _cells_by_step(best.run, s, w)) for s, w in settings]
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


def _cells_by_step(run: Run, sampling: str, weights: str) -> dict[int, CellRow]:
    return {
        c.step: c
        for c in run.cells
        if c.sampling == sampling and (c.weights == weights or c.step == 0)
    }


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
    _save(fig, file.parent, file.name)
    return True


def optuna_figures(sweep: Sweep, folder: Path) -> tuple[list[Figure], list[str]]:
    """Optuna's own plots of the study: history, parameter importances, intermediate values
    (the curves the pruner judged, pruned trials included)."""
    study = sweep.study
    if study is None or study.optuna_study is None:
        return [], []
    import optuna
    import optuna.visualization.matplotlib as ov

    target = None
    if len(study.directions) > 1:
        target = lambda t: t.values[0]  # noqa: E731 - the first objective
    plots = [
        (
            "optuna_history.png",
            "Optuna: optimisation history",
            "The objective of every complete trial and the best so far.",
            lambda s: ov.plot_optimization_history(s, target=target),
        ),
        (
            "optuna_importances.png",
            "Optuna: parameter importances",
            "How much each swept setting matters to the objective (Optuna's default "
            "evaluator, PED-ANOVA); rough with few trials.",
            lambda s: ov.plot_param_importances(s, target=target),
        ),
    ]
    figures, notes = intermediate_values(sweep, folder), []
    for name, title, caption, draw in plots:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                ax = draw(study.optuna_study)
        except Exception as err:  # e.g. too few complete trials for importances
            notes.append(f"{title} not drawn: {err}")
            plt.close("all")
            continue
        _save(ax.figure, folder, name)
        figures.append(Figure(name, title, caption))
    return figures, notes


TRIAL_STYLE = {  # told apart by line and marker, not only colour
    "complete": {"linestyle": "-", "marker": "o"},
    "pruned": {"linestyle": "--", "marker": "x"},
    "fail": {"linestyle": ":", "marker": "v"},
    "running": {"linestyle": "-.", "marker": "."},
}


def intermediate_values(sweep: Sweep, folder: Path) -> list[Figure]:
    """What each trial reported to the pruner at each evaluation; a pruned trial's line ends
    where the pruner stopped it (a large X)."""
    trials = [t for t in sweep.study.trials if t.intermediate]
    if not trials:
        return []
    fig, ax = plt.subplots(figsize=(7, 4.2), layout="constrained")
    for t in trials:
        steps, values = zip(*sorted(t.intermediate.items()), strict=True)
        style = TRIAL_STYLE.get(t.state, TRIAL_STYLE["running"])
        ax.plot(steps, values, label=f"trial {t.number} ({t.state})", markersize=5, **style)
        if t.state == "pruned":
            ax.plot(steps[-1], values[-1], marker="X", markersize=11, color="black")
    ax.set_xlabel("step")
    ax.set_ylabel("reported objective (best cell of the step)")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    _save(fig, folder, "optuna_intermediate.png")
    pruned = sum(t.state == "pruned" for t in trials)
    return [
        Figure(
            "optuna_intermediate.png",
            "Optuna: intermediate values and pruning",
            f"The objective each trial reported at its evaluations; {pruned} pruned trial(s) end "
            "early (dashed, X where the pruner stopped them) and keep their scores.",
        )
    ]


def all_figures(
    sweep: Sweep, folder: Path, best: BestCard | None
) -> tuple[list[Figure], list[str]]:
    figures = curves(sweep, folder, best) + pareto(sweep, folder, best) + heatmap(sweep, folder)
    figures += image_grids(sweep, folder, best)
    study_figures, notes = optuna_figures(sweep, folder)
    return figures + study_figures, notes
