"""evaluate.py's work: score a finished run's saved weights, or a base model, without training."""

from __future__ import annotations

import dataclasses
from contextlib import nullcontext
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dreamsweep.config import ConfigError, RunConfig, load_config, load_saved_config
from dreamsweep.runs import (
    COMPLETE,
    RunPaths,
    cell_dir,
    grid_file,
    read_json,
    read_metrics,
    write_result,
)

RESCORE_SECTIONS = ("eval", "metrics", "tracker")


def rescore_config(raw: DictConfig, overrides: list[str]) -> tuple[RunConfig, Path | None]:
    """evaluate.py's raw Hydra config as typed settings and the run folder to score (None: a
    base model). With run=..., the run's own settings with what this command's overrides (the
    command line) change in eval/metrics/tracker, so prompts and seeds stay the run's unless
    asked otherwise; a key the run's version did not write takes the composed value. Without
    run=..., the composed settings. Validated once, as the combination that will be scored."""
    raw = OmegaConf.create(OmegaConf.to_container(raw, resolve=True))
    run = raw.pop("run", None)
    if run is None:
        return load_config(raw), None
    run_dir = Path(str(run)).expanduser().resolve()
    paths = RunPaths(run_dir)
    result = read_json(paths.result) or {}
    if not paths.config.exists() or result.get("state") != COMPLETE or not paths.model.exists():
        raise ConfigError(
            f"run={run_dir}: not a finished run folder (needs config.yaml, "
            "model/ and result.json with state complete)"
        )
    saved = OmegaConf.load(paths.config)
    for override in overrides:
        key = override.lstrip("+~").split("=", 1)[0]
        if key in RESCORE_SECTIONS:  # a group choice (eval=quick): that whole section
            saved[key] = raw[key]
        elif key.split(".", 1)[0] in RESCORE_SECTIONS:
            OmegaConf.update(saved, key, OmegaConf.select(raw, key), force_add=True)
    try:
        return load_saved_config(saved, defaults=raw), run_dir
    except ConfigError as err:
        raise ConfigError(f"{paths.config} with this command's overrides: {err}") from None


def rescore(cfg: RunConfig, run_dir: Path | None, out_dir: Path) -> float | None:
    """Score ``run_dir``'s saved weights (or, without one, the base model into ``out_dir``)
    under ``cfg``'s evaluation settings (`rescore_config`); return the best objective."""
    import torch
    from accelerate import Accelerator

    from dreamsweep.evaluation.evaluator import Evaluator, build_scorer
    from dreamsweep.metrics.objective import best_cell
    from dreamsweep.models.loading import fingerprint, load_components
    from dreamsweep.tracking import open_trackers

    target = run_dir or out_dir
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    cache_root = Path(cfg.cache_dir).expanduser()
    evaluator = Evaluator(
        cfg,
        accelerator,
        target,
        cache_root,
        build_scorer(cfg, cache_root),
        lambda message: print(f"[dreamsweep] {message}", flush=True),
    )
    base = load_components(cfg.model)
    for module in base.modules():
        module.to(accelerator.device)
    evaluator.prepare_baselines(base, fingerprint(base))
    step, weights = 0, {"base": lambda: nullcontext(base)}
    if run_dir is not None:
        step = read_json(RunPaths(run_dir).result)["final_step"]
        weights = _saved_weights(cfg, run_dir, accelerator.device)
    records = evaluator.evaluate(step, weights)
    trackers = open_trackers(cfg, target, resume_step=None, job_type="evaluate")
    grids = {r["cell"]: grid_file(cell_dir(target, step, r["cell"])) for r in records}
    for tracker in trackers:
        tracker.log_eval(records, grids)
        tracker.finish()
    best = best_cell([r for r in read_metrics(RunPaths(target)) if r.get("kind") == "eval"])
    if run_dir is not None and best is not None:
        keep_best(cfg, run_dir, best, step, weights)
        write_result(RunPaths(run_dir), COMPLETE, objective=best["objective"], best=best)
    return (
        best["objective"]
        if best
        else max((r["objective"] for r in records if r["objective"] is not None), default=None)
    )


def keep_best(cfg: RunConfig, run_dir: Path, best: dict, step: int, weights: dict) -> None:
    """Make `<run>/best/` hold the run's best cell after re-scoring, so that best/, result.json,
    the report and export name the same cell: when a cell just scored wins, its weights replace
    best/; when the winner's weights are not at hand, say so."""
    from dreamsweep.best_weights import BestKeeper, kept_cell
    from dreamsweep.config import public_settings

    kept = kept_cell(run_dir)
    if kept is not None and (kept["step"], kept["cell"]) == (best["step"], best["cell"]):
        return
    if best["step"] == step and best["weights"] in weights:
        BestKeeper(cfg, run_dir / "best", public_settings(cfg)).save(best, weights)
        print(f"[dreamsweep] best so far: step {step} {best['cell']} -> {run_dir / 'best'}")
        return
    held = f"step {kept['step']} {kept['cell']}" if kept else "nothing"
    print(
        f"[dreamsweep] the best cell is now step {best['step']} {best['cell']}, whose weights "
        f"are not kept (best/ holds {held}): its reproduce command in the report trains it again"
    )


def _saved_weights(cfg: RunConfig, run_dir: Path, device) -> dict:
    """The exported pipeline (EMA weights when EMA was on) and the raw UNet beside it."""
    from diffusers import UNet2DConditionModel

    from dreamsweep.models.loading import load_components, saved_model

    model_dir = RunPaths(run_dir).model
    final = load_components(saved_model(model_dir, name="run"))
    for module in final.modules():
        module.to(device)
    available = {"ema" if cfg.ema.enabled else "raw": final}
    if (model_dir / "unet_raw").exists():
        raw_unet = UNet2DConditionModel.from_pretrained(model_dir / "unet_raw").to(device)
        available["raw"] = dataclasses.replace(final, unet=raw_unet)
    chosen = {n: c for n, c in available.items() if n in cfg.eval.weights} or available
    return {name: (lambda c=c: nullcontext(c)) for name, c in chosen.items()}
