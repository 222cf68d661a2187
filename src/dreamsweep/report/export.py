"""`dreamsweep report <sweep or run folder>`: collect, analyse, draw, render, in that order.

The report is built in a temporary folder beside its destination and moved into place at the
end, so a failed export never leaves half a report nor destroys the previous one.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

from dreamsweep import verdicts
from dreamsweep.atomic import new_folder
from dreamsweep.report.best import BestCard, Contender, best_card, describe_cell
from dreamsweep.report.collect import Sweep, collect
from dreamsweep.report.findings import findings, setting_effects
from dreamsweep.report.gallery import MIN_SHOWN_PX, gallery
from dreamsweep.report.plots import all_figures, curve_scores
from dreamsweep.report.render import render_pages
from dreamsweep.runs import grid_file


def default_destination(sweep: Sweep, reports_root: Path) -> Path:
    """reports/<sweep name>-<folder name>, e.g. reports/lr_steps-2026-12-01_10-00-00."""
    return reports_root / f"{sweep.name}-{sweep.root.name}"


def export_report(
    folder: Path, out: Path | None = None, reports_root: Path = Path("reports"), wandb: bool = False
) -> Path:
    """Write the report of a sweep or run folder; returns the report folder."""
    started = time.perf_counter()
    sweep = collect(folder)
    out = (out or default_destination(sweep, reports_root)).resolve()
    with new_folder(out) as tmp:  # also removes what killed exports/reports left there
        best = best_card(sweep)
        figures, figure_notes = all_figures(sweep, tmp / "figures", best)
        context = page_context(sweep, best, figures, sweep.notes + figure_notes)
        context["gallery"] = gallery(sweep, best, tmp)
        render_pages(context, tmp, report_dir=out)
        write_cells_csv(sweep, tmp / "cells.csv", context["score_columns"])
        summary = best_json(sweep, best, time.perf_counter() - started)
        if wandb:
            from dreamsweep.report.wandb_log import log_report

            summary["wandb"] = log_report(sweep, context, tmp)
        (tmp / "best.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return out


def page_context(sweep: Sweep, best: BestCard | None, figures, notes: list[str]) -> dict[str, Any]:
    present = {k for c in sweep.cells for k, v in c.scores.items() if v is not None}
    effects = setting_effects(sweep)  # paired verdicts: computed once for the page
    score_columns = [k for k in curve_scores() if k in present and k != "objective"]
    first = next((c for c in sweep.cells if c.prompts), None)
    study = sweep.study
    return {
        "title": f"DreamSweep report: {sweep.name} ({sweep.root.name})",
        "objective_text": _objective_text(sweep),
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "sweep": sweep,
        "best": best,
        "best_label": sweep.label(best.run) if best and sweep.varying else "",
        "best_cell": describe_cell(best.row) if best else "",
        "export_command": export_command(sweep),
        "gallery_px": MIN_SHOWN_PX,
        "best_scores": [
            (k, best.row.scores.get(k), best.row.intervals.get(k)) for k in score_columns
        ]
        if best
        else [],
        "labels": {r.name: sweep.label(r) for r in sweep.runs},
        "findings": findings(sweep, best, effects),
        "next_steps": _next_steps(sweep, best, effects),
        "effects": effects,
        "figures": figures,
        "runs": [_run_row(sweep, r) for r in sweep.runs],
        "study": study,
        "trial_counts": ", ".join(
            f"{sum(t.state == s for t in study.trials)} {s}"
            for s in sorted({t.state for t in study.trials})
        )
        if study
        else "",
        "cells": sorted(sweep.cells, key=_by_objective),
        "score_columns": score_columns,
        "prompts": sorted(set(first.prompts), key=first.prompts.index) if first else [],
        "seeds": sorted(set(first.seeds)) if first else [],
        "notes": notes,
        "skipped_summary": sweep.skipped_summary(),
    }


def _next_steps(sweep: Sweep, best: BestCard | None, effects) -> list[str]:
    """ "What to try next": the proposals `dreamsweep next` would write as a preset."""
    from dreamsweep.report.next_sweep import propose, summary

    try:
        return summary(propose(sweep, best, effects))
    except (OSError, KeyError, ValueError) as err:  # an odd multirun.yaml: the rest still renders
        return [f"no proposal: {err}"]


def _objective_text(sweep: Sweep) -> str:
    from dreamsweep.metrics.objective import describe

    run = next((r for r in sweep.runs if r.config), None)
    return describe(*run.objective_settings()) if run else describe()


def _by_objective(cell) -> tuple:
    return (cell.objective is None, -(cell.objective or 0.0), cell.run, cell.step)


def _run_row(sweep: Sweep, run) -> dict[str, Any]:
    top = run.best_cell
    tracker = (run.result.get("wandb") or {}).get("train") or {}  # the run's W&B run
    offline = sorted((run.path / "wandb").glob("offline-run-*"))
    grid = grid_file(top.folder) if top is not None and top.folder is not None else None
    return {
        "name": run.name,
        "path": run.path.resolve(),
        "best_grid": grid.resolve() if grid is not None and grid.exists() else None,
        "best_weights": (run.path / "best").resolve() if (run.path / "best").is_dir() else None,
        "label": sweep.label(run),
        "state": run.state,
        "final_step": run.final_step,
        "best_objective": run.best_objective,
        "best_cell": f"step {top.step} {top.cell}" if top else "—",
        "message": (run.error or "").splitlines()[0] if run.error else "",
        "wandb_url": tracker.get("url"),
        "wandb_sync": f"wandb sync {offline[-1]}" if offline and not tracker.get("url") else "",
    }


def write_cells_csv(sweep: Sweep, file: Path, score_columns: list[str]) -> None:
    fields = [
        "run",
        "state",
        "step",
        "cell",
        "scheduler",
        "num_inference_steps",
        "guidance_scale",
        "weights",
        "objective",
        *score_columns,
    ]
    states = {r.name: r.state for r in sweep.runs}
    with file.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for c in sweep.cells:
            writer.writerow(
                {
                    "run": c.run,
                    "state": states[c.run],
                    "step": c.step,
                    "cell": c.cell,
                    "scheduler": c.scheduler,
                    "num_inference_steps": c.num_inference_steps,
                    "guidance_scale": c.guidance_scale,
                    "weights": c.weights,
                    "objective": c.objective,
                    **{k: c.scores.get(k) for k in score_columns},
                }
            )


def best_trials(study) -> list[int]:
    """Optuna's best trial, or the Pareto front of a multi-objective study ([] before any)."""
    try:
        if len(study.directions) == 1:
            return [study.best_trial.number]
        return [t.number for t in study.best_trials]
    except ValueError:  # no complete trial yet
        return []


def export_command(sweep: Sweep) -> str:
    """What turns the winner into files A1111, ComfyUI and diffusers load."""
    return f"dreamsweep export {sweep.root} --format diffusers --format single-file"


def best_json(sweep: Sweep, best: BestCard | None, seconds: float) -> dict[str, Any]:
    """The machine-readable answer: the best cell, how to get it, and what is within noise."""
    states = [r.state for r in sweep.runs]
    out: dict[str, Any] = {
        "sweep": {
            "folder": str(sweep.root),
            "name": sweep.name,
            "runs": {s: states.count(s) for s in sorted(set(states))},
            "cells": len(sweep.cells),
            "varying": sweep.varying,
            "skipped": [str(k) for k in sweep.skipped],  # unreadable files and lines
        },
        "best": None,
        "verdicts": None,
        "within_noise": [],
        "report_seconds": round(seconds, 2),
    }
    if sweep.study is not None:
        out["optuna"] = {
            "study": sweep.study.name,
            "storage": sweep.study.storage,
            "trials": len(sweep.study.trials),
            "best_trials": best_trials(sweep.study.optuna_study),
        }
    if best is None:
        return out
    row = best.row
    out["best"] = {
        "run": best.run.name,
        "run_dir": str(best.run.path),
        "step": row.step,
        "cell": row.cell,
        "scheduler": row.scheduler,
        "num_inference_steps": row.num_inference_steps,
        "guidance_scale": row.guidance_scale,
        "weights": row.weights,
        "objective": row.objective,
        "objective_interval": best.interval,
        "p_best": best.p_best,
        "scores": row.scores,
        "score_intervals": row.intervals,
        "changed_settings": best.changed,
        "command": best.command,
        "weights_path": str(best.weights) if best.weights else None,
        "weights_note": best.weights_note,
        "export_command": export_command(sweep),
        "gallery_px": MIN_SHOWN_PX,
    }
    out["verdicts"] = {
        "method": "paired bootstrap over seeds within each prompt, 95% percentile intervals, "
        f"{verdicts.RESAMPLES} resamples; the prompt suite is fixed ({best.suite})",
        "cannot_separate": [_cell_ref(c) for c in best.inseparable],
        "seeds_to_separate_top_two": best.seeds_needed,
        "more_seeds_override": best.more_seeds_override,
        "closest": [_cell_ref(c) for c in best.contenders],
    }
    out["within_noise"] = [_cell_ref(c) for c in best.within_noise]
    return out


def _cell_ref(c: Contender) -> dict[str, Any]:
    gap = c.gap
    return {
        "run": c.row.run,
        "step": c.row.step,
        "cell": c.row.cell,
        "objective": c.row.objective,
        "p_best": c.p_best,
        "gap": gap.estimate if gap else None,
        "gap_interval": [gap.low, gap.high] if gap else None,
        "paired": gap.paired if gap else None,
        "verdict": c.verdict,
    }
