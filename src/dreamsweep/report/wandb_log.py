"""`dreamsweep report --wandb`: the report's tables and figures as a W&B run (job_type=report).

Offline unless WANDB_MODE says otherwise, with every W&B folder inside the report folder;
`wandb sync <report>/wandb/offline-run-*` uploads it later, beside the sweep's runs (same group).
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path
from typing import Any

from dreamsweep.config import ConfigError, TrackerConfig
from dreamsweep.report.collect import Sweep

FALLBACK_PROJECT = "dreamsweep"  # conf/tracker's project: for a sweep none of whose runs started


def log_report(sweep: Sweep, context: dict[str, Any], out: Path) -> dict[str, Any]:
    import wandb

    from dreamsweep.tracking.wandb import point_wandb_dirs_at, run_link

    point_wandb_dirs_at(out)
    tracker = sweep_tracker(sweep)
    run = wandb.init(
        project=tracker.project if tracker else FALLBACK_PROJECT,
        entity=tracker.entity if tracker else None,
        mode=os.environ.get("WANDB_MODE", "offline"),
        dir=str(out),
        name=f"report-{sweep.name}-{sweep.root.name}",
        group=sweep.name,
        job_type="report",
        config={"folder": str(sweep.root), "varying": sweep.varying},
        settings=wandb.Settings(console="off", silent=True),
    )
    columns = ["run", "state", "step", "cell", "weights", "objective", "objective_low"]
    columns += ["objective_high", "p_best", "verdict", *context["score_columns"]]
    states = {r.name: r.state for r in sweep.runs}
    verdict = _verdicts(context["best"])
    cells = wandb.Table(
        columns=columns,
        data=[
            [
                c.run,
                states[c.run],
                c.step,
                c.cell,
                c.weights,
                c.objective,
                *(c.intervals.get("objective") or (None, None)),
                *verdict.get(id(c), (None, None)),
                *(c.scores.get(k) for k in context["score_columns"]),
            ]
            for c in sweep.cells
        ],
    )
    runs = wandb.Table(
        columns=["run", "state", "settings", "final_step", "best_objective", "wandb"],
        data=[
            [
                r["name"],
                r["state"],
                r["label"],
                r["final_step"],
                r["best_objective"],
                r["wandb_url"] or "",
            ]
            for r in context["runs"]
        ],
    )
    figures = {
        f"figures/{f.file.removesuffix('.png')}": wandb.Image(
            str(out / "figures" / f.file), caption=f.title
        )
        for f in context["figures"]
    }
    run.log({"report/cells": cells, "report/runs": runs, **figures})
    best = context["best"]
    if best is not None:
        run.summary.update(
            {
                "best/objective": best.row.objective,
                "best/objective_interval": list(best.interval) if best.interval else None,
                "best/p_best": best.p_best,
                "best/cannot_separate": len(best.inseparable),
                "best/seeds_to_separate": best.seeds_needed,
                "best/run": best.run.name,
                "best/step": best.row.step,
                "best/cell": best.row.cell,
                "best/command": best.command,
            }
        )
    if best is not None and best.weights is not None and best.weights.is_dir():
        run.log_artifact(model_artifact(sweep, best))
    link = run_link(run)
    run.finish()
    # relative: the report is built in a temporary folder and moved into place afterwards
    return {**link, "dir": str(Path(link["dir"]).relative_to(out))}


def sweep_tracker(sweep: Sweep) -> TrackerConfig | None:
    """The tracker settings of the sweep's first run whose config.yaml loads: the report goes
    to the project and entity its runs went to."""
    for run in sweep.runs:
        with suppress(ConfigError):
            return run.settings.tracker
    return None


def _verdicts(best) -> dict[int, tuple[float | None, str]]:
    """Cell (by id) -> (P(best), verdict against the best cell) for the cells table."""
    if best is None:
        return {}
    out = {id(c.row): (c.p_best, c.verdict) for c in [*best.contenders, *best.inseparable]}
    out[id(best.row)] = (best.p_best, "best")
    return out


def model_artifact(sweep: Sweep, best):
    """The winner's weights (its `best/` folder) as a W&B model artifact, with its cell and
    scores as metadata (never the Optuna storage)."""
    import wandb

    artifact = wandb.Artifact(
        name=f"{sweep.name}-best-model",
        type="model",
        description=f"best cell of {sweep.root}: {best.run.name} step {best.row.step} "
        f"{best.row.cell}",
        metadata={
            "run": best.run.name,
            "step": best.row.step,
            "cell": best.row.cell,
            "objective": best.row.objective,
            "scores": best.row.scores,
            "command": best.command,
        },
    )
    artifact.add_dir(str(best.weights))
    return artifact
