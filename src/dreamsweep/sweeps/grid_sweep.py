"""The grid sweep loop: plan (fold evaluation axes), say what will run, run every job.

The plan is printed and written to `<sweep>/plan.json` before anything trains: for each job
its overrides and the cells its run will score (cells.planned_cells of its composed config),
so what a sweep promises and what it scores are the same list.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import OmegaConf, read_write

from dreamsweep import atomic
from dreamsweep.cells import planned_cells
from dreamsweep.config import ConfigError, load_config
from dreamsweep.runs import RunPaths, cell_key, read_json
from dreamsweep.sweeps.folding import GridPlan, plan_grid
from dreamsweep.sweeps.search_space import override_value, run_names
from dreamsweep.sweeps.settings import GridSweeperConfig

log = logging.getLogger("dreamsweep.sweep")


def plan_sweep(sweeper, arguments: list[str]) -> tuple[GridPlan, list[dict]]:
    """The grid plan and, per job, its overrides and planned cells (or why it is invalid)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg, loader = sweeper.config, sweeper.hydra_context.config_loader
    settings = GridSweeperConfig(**{k: v for k, v in sweeper.settings.items() if k != "_target_"})
    params = [f"{k}={v}" for k, v in (settings.params or {}).items()]

    def compose(overrides: list[str]):
        return loader.load_sweep_config(cfg, list(overrides))

    plan = plan_grid(
        OverridesParser.create(config_loader=loader).parse_overrides(params + list(arguments)),
        list(cfg.eval.at_steps),
        schedule_of=lambda run: str(compose(run).optim.lr_scheduler),
        fold=settings.fold,
    )
    jobs = []
    for number, overrides in enumerate(plan.runs):
        job = {"job": number, "overrides": overrides}
        try:
            raw = compose(overrides)
            raw = OmegaConf.create(OmegaConf.to_container(raw, resolve=False))
            del raw["hydra"]
            run_cfg = load_config(raw, check_machine=False)
            job["cells"] = [cell_key(c.step, c.name) for c in planned_cells(run_cfg)]
        except ConfigError as err:
            job["cells"], job["error"] = [], str(err)
        jobs.append(job)
    return plan, jobs


def run_grid(sweeper, arguments: list[str]) -> list:
    from hydra.core.utils import JobStatus

    cfg = sweeper.config
    plan, jobs = plan_sweep(sweeper, arguments)
    for warning in plan.warnings:
        log.warning(warning)
    total = sum(len(j["cells"]) for j in jobs)
    log.info(
        "grid: %d training run(s), %d scored cell(s) in all (%s per run)%s",
        len(plan.runs),
        total,
        "/".join(str(len(j["cells"])) for j in jobs),
        f"; folded: {' '.join(plan.folded)}" if plan.folded else "",
    )
    for job in jobs:
        if "error" in job:
            log.warning("job %d will fail: %s", job["job"], job["error"])
    sweep_dir, runs = Path(cfg.hydra.sweep.dir), plan.runs
    if not _sweep_dir_given(cfg) and (previous := previous_sweep(sweep_dir, jobs)):
        log.info("resuming %s (same grid): complete runs are kept, the others resume", previous)
        sweep_dir = previous
        with read_write(cfg.hydra.sweep):  # the launcher's config: it makes this folder
            cfg.hydra.sweep.dir = str(previous)
        runs = [run + [f"hydra.sweep.dir={override_value(str(previous))}"] for run in runs]
    write_plan(cfg, sweep_dir, plan, jobs)
    runs = [
        run + [f"run_name={override_value(name)}"]
        for run, name in zip(runs, named_runs(plan.runs), strict=True)
    ]
    results = sweeper.launcher.launch(runs, initial_job_idx=0)
    states = [
        (read_json(RunPaths(Path(r.hydra_cfg.hydra.runtime.output_dir)).result) or {}).get(
            "state", "failed"
        )
        for r in results
    ]
    log.info("grid done: %s", {s: states.count(s) for s in sorted(set(states))})
    scored = [
        r
        for r in results
        if r.status == JobStatus.COMPLETED and isinstance(r.return_value, float | int)
    ]
    if scored:
        best = max(scored, key=lambda r: r.return_value)
        log.info(
            "best run: %s (objective %.4f)",
            best.hydra_cfg.hydra.runtime.output_dir,
            best.return_value,
        )
    return [results]


def write_plan(cfg, sweep_dir: Path, plan: GridPlan, jobs: list[dict]) -> None:
    """multirun.yaml and plan.json: what the sweep promises, before anything trains."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    summary = {"folded": plan.folded, "warnings": plan.warnings, "jobs": jobs}
    atomic.write_text(sweep_dir / "plan.json", json.dumps(summary, indent=2) + "\n")


def named_runs(runs: list[list[str]]) -> list[str]:
    """The W&B names of a grid's runs: the settings that differ between them."""
    return run_names([dict(o.split("=", 1) for o in run if "=" in o) for run in runs])


def _sweep_dir_given(cfg) -> bool:
    return any(o.startswith("hydra.sweep.dir=") for o in cfg.hydra.overrides.hydra)


def previous_sweep(sweep_dir: Path, jobs: list[dict]) -> Path | None:
    """The newest earlier folder of this sweep (`outputs/sweeps/<name>/<date>`) that ran the
    same grid: the same command run again continues it instead of retraining every run."""
    wanted = [job["overrides"] for job in jobs]
    earlier = sorted(p for p in sweep_dir.parent.glob("*/plan.json") if p.parent != sweep_dir)
    for plan_file in reversed(earlier):
        try:
            planned = [job["overrides"] for job in json.loads(plan_file.read_text())["jobs"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if planned == wanted:
            return plan_file.parent
    return None
