"""Figures of an Optuna study: optimisation history, parameter importances, and the values
each trial reported to the pruner (pruned trials marked)."""

from __future__ import annotations

import warnings
from pathlib import Path

import matplotlib.pyplot as plt

from dreamsweep.report.collect import Sweep
from dreamsweep.report.figure import Figure, save


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
        save(ax.figure, folder, name)
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
        if t.state == "pruned":  # where the pruner stopped it, labelled by its number
            ax.plot(steps[-1], values[-1], marker="X", markersize=11, color="black")
            ax.annotate(
                f"#{t.number}", (steps[-1], values[-1]), xytext=(6, 4),
                textcoords="offset points", fontsize=8,
            )  # fmt: skip
    ax.set_xlabel("step")
    ax.set_ylabel("reported objective (best cell of the step)")
    ax.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="outside right upper")
    save(fig, folder, "optuna_intermediate.png")
    pruned = sum(t.state == "pruned" for t in trials)
    return [
        Figure(
            "optuna_intermediate.png",
            "Optuna: intermediate values and pruning",
            f"The objective each trial reported at its evaluations; {pruned} pruned trial(s) end "
            "early (dashed, X where the pruner stopped them) and keep their scores.",
        )
    ]
