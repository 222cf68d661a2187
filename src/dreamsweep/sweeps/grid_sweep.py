"""The grid sweep loop: plan (fold evaluation axes), say what will run, run every job."""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from dreamsweep.runs import RunPaths, read_json
from dreamsweep.sweeps.folding import plan_grid

log = logging.getLogger("dreamsweep.sweep")


def count_cells(cfg, folded: list[str]) -> int:
    """Cells per run: trained eval steps x sampling settings x weights, plus the baseline."""
    settings = dict(line.split("=", 1) for line in folded)

    def values(key: str, default) -> list[str]:
        value = settings.get(key)
        return value.strip("[]").split(",") if value else [str(v) for v in default]

    max_steps = int(settings.get("train.max_steps", cfg.train.max_steps))
    steps = {int(s) for s in values("eval.at_steps", cfg.eval.at_steps) if s} | {max_steps}
    sampling = (
        len(values("eval.schedulers", cfg.eval.schedulers))
        * len(values("eval.num_inference_steps", cfg.eval.num_inference_steps))
        * len(values("eval.guidance_scale", cfg.eval.guidance_scale))
    )
    weights = len(values("eval.weights", cfg.eval.weights))
    return sampling * (len(steps - {0}) * weights + 1)


def run_grid(sweeper, arguments: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.utils import JobStatus

    cfg = sweeper.config
    params = [f"{k}={v}" for k, v in (sweeper.settings.get("params") or {}).items()]
    parser = OverridesParser.create(config_loader=sweeper.hydra_context.config_loader)
    plan = plan_grid(
        parser.parse_overrides(params + list(arguments)),
        cfg.optim.lr_scheduler,
        list(cfg.eval.at_steps),
        fold=sweeper.settings.get("fold", True),
    )
    for warning in plan.warnings:
        log.warning(warning)
    cells = count_cells(cfg, plan.folded)
    log.info(
        "grid: %d training run(s) x %d scored cell(s) = %d cells%s",
        len(plan.runs),
        cells,
        cells * len(plan.runs),
        f" (folded: {' '.join(plan.folded)})" if plan.folded else "",
    )
    sweep_dir = Path(cfg.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, sweep_dir / "multirun.yaml")
    results = sweeper.launcher.launch(plan.runs, initial_job_idx=0)
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
