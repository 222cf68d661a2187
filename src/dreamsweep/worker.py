"""One training run in one process group: `python -m dreamsweep.worker <run>/config.yaml`.

Started by train.py (plainly, or under `accelerate launch`); it never composes Hydra config,
it reads the resolved config.yaml of its run folder. Only the main process writes files.
"""

from __future__ import annotations

import sys
import time
import traceback
from contextlib import contextmanager, nullcontext
from pathlib import Path

from omegaconf import OmegaConf

from dreamsweep.config import RunConfig, load_config, to_dict
from dreamsweep.runs import COMPLETE, FAILED, PRUNED, RUNNING, RunPaths, write_result

EXIT_RECORDED_FAILURE = 0  # result.json says "failed" and why; no launcher trace on top


def run(cfg: RunConfig, run_dir: Path, accelerator) -> dict:
    """Evaluate the base model, train (resuming from the last checkpoint) with evaluations
    along the way, then export; returns the fields for result.json."""
    from dreamsweep.models.loading import fingerprint, load_components
    from dreamsweep.sweeps.pruning import PruningHook
    from dreamsweep.tracking import open_trackers
    from dreamsweep.training import checkpoint as ckpt
    from dreamsweep.training.loop import train
    from dreamsweep.training.setup import build_state, configure_models, prepare_data, unwrapped

    paths, main, log = RunPaths(run_dir), accelerator.is_main_process, _logger(accelerator)
    cache_root = Path(cfg.cache_dir).expanduser()
    evaluator = _evaluator(cfg, accelerator, run_dir, cache_root, log)  # metric models first
    components = load_components(cfg.model)
    model_fp = fingerprint(components)
    data = prepare_data(cfg, components, accelerator, model_fp, cache_root, log)
    resume_step = ckpt.latest_step(paths.checkpoints)
    trackers = open_trackers(cfg, run_dir, resume_step=resume_step) if main else []
    exit_code = 1
    try:
        evaluate = _eval_hook(evaluator, trackers, run_dir, PruningHook(cfg.optuna, accelerator))
        if evaluator is not None and resume_step == 0:
            evaluator.prepare_baselines(components, model_fp)
            evaluate(0, {"base": lambda: nullcontext(components)})
        configure_models(cfg, components, accelerator)
        state = build_state(cfg, components, accelerator, data)
        start = ckpt.resume_latest(accelerator, paths.checkpoints)
        if start:
            log(f"resuming from the checkpoint at step {start}")
        if evaluator is not None and start:
            evaluator.prepare_baselines(components, model_fp)  # from the cache
        started, eval_before = time.perf_counter(), evaluate.timing["eval"]
        step = train(
            state,
            start,
            log=lambda values, step: [t.log(values, step) for t in trackers],
            save=lambda step: ckpt.save_checkpoint(
                accelerator, paths.checkpoints, step, cfg.train.keep_checkpoints
            ),
            evaluate=lambda step: evaluate(step, _trained_weights(cfg, state)),
        )
        accelerator.wait_for_everyone()
        loop_seconds = time.perf_counter() - started
        in_sync = weights_in_sync(accelerator, state.unet)
        eval_in_loop = evaluate.timing["eval"] - eval_before
        fields = {
            "final_step": step,
            "num_processes": accelerator.num_processes,
            "weights_in_sync": in_sync,
            # wall time of this attempt: training (with checkpoints) vs all evaluation
            "seconds": {
                "train": round(loop_seconds - eval_in_loop, 2),
                "eval": round(evaluate.timing["eval"], 2),
            },
        }
        if main:
            ckpt.export_pipeline(unwrapped(state), paths.model, to_dict(cfg), ema=state.ema)
            log(f"final weights: {paths.model}")
            fields.update(_best_of_run(paths, trackers))
        exit_code = 0
    finally:
        for tracker in trackers:
            tracker.finish(exit_code)
    return fields


def _evaluator(cfg: RunConfig, accelerator, run_dir: Path, cache_root: Path, log):
    from dreamsweep.evaluation import Evaluator, build_scorer

    if not cfg.eval.enabled:
        return None
    with accelerator.main_process_first():
        scorer = build_scorer(cfg, cache_root) if cfg.metrics.scorers else None
    return Evaluator(cfg, accelerator, run_dir, cache_root, scorer, log)


def _eval_hook(evaluator, trackers, run_dir: Path, pruning):
    """evaluate(step, weights): score the cells of an eval step, log them, and let an Optuna
    pruner stop the run (the step's best cell is the value reported)."""
    from dreamsweep.eval_outputs import cell_dir

    timing = {"eval": 0.0}

    def evaluate(step: int, weights: dict) -> None:
        if evaluator is None or step not in evaluator.steps:
            return
        started = time.perf_counter()
        records = evaluator.evaluate(step, weights)
        timing["eval"] += time.perf_counter() - started
        grids = {r["cell"]: cell_dir(run_dir, step, r["cell"]) / "grid.png" for r in records}
        for tracker in trackers:
            tracker.log_eval(records, grids)
        values = [r["objective"] for r in records if r["objective"] is not None]
        pruning.report(step, max(values) if values else None)

    evaluate.timing = timing
    return evaluate


def _trained_weights(cfg: RunConfig, state) -> dict:
    """The weights to evaluate: raw, and EMA when it is on (eval.weights chooses)."""
    from dreamsweep.training.ema import ema_weights
    from dreamsweep.training.setup import unwrapped

    @contextmanager
    def ema():
        components = unwrapped(state)
        with ema_weights(state.ema, components.unet):
            yield components

    available = {"raw": lambda: nullcontext(unwrapped(state))}
    if state.ema is not None:
        available["ema"] = ema
    return {name: available[name] for name in cfg.eval.weights if name in available} or {
        "raw": available["raw"]
    }


def _best_of_run(paths: RunPaths, trackers) -> dict:
    """The run's objective is its best cell's (the best checkpoint and sampling setting)."""
    from dreamsweep.metrics.objective import best_cell
    from dreamsweep.runs import read_metrics

    best = best_cell([r for r in read_metrics(paths) if r.get("kind") == "eval"])
    if best is None:
        return {"objective": None, "best": None}
    for tracker in trackers:
        tracker.summary(
            {
                "best/objective": best["objective"],
                "best/cell": best["cell"],
                "best/step": best["step"],
            }
        )
    return {"objective": best["objective"], "best": best}


def weights_in_sync(accelerator, model) -> bool:
    """Every process holds the same weights (gradients were synchronised); a cheap checksum."""
    import torch

    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    checksum = torch.stack([flat.sum(), flat.abs().sum(), (flat * flat).sum()])
    gathered = accelerator.gather(checksum.to(accelerator.device).reshape(1, 3)).cpu()
    return bool((gathered == gathered[0]).all())


def _logger(accelerator):
    def log(message: str) -> None:
        if accelerator.is_main_process:
            print(f"[dreamsweep] {message}", flush=True)

    return log


def main(config_file: str) -> int:
    """Exit code 0: the outcome is in result.json (complete, or failed with a message such as
    a diverged loss); 1: a crash, with its traceback also in result.json."""
    import torch
    from accelerate import Accelerator

    from dreamsweep.sweeps.pruning import TrialPruned
    from dreamsweep.training.loop import TrainingDiverged

    run_dir = Path(config_file).resolve().parent
    paths = RunPaths(run_dir)
    cfg = load_config(OmegaConf.load(config_file))
    torch.use_deterministic_algorithms(True, warn_only=True)
    # cpu=True on a CPU-only machine: ranks started by torchrun then use the gloo backend.
    accelerator = Accelerator(
        mixed_precision=cfg.launcher.mixed_precision, cpu=not torch.cuda.is_available()
    )
    main_process = accelerator.is_main_process
    if main_process:
        write_result(paths, RUNNING, final_step=None, error=None, objective=None)
    try:
        fields = run(cfg, run_dir, accelerator)
    except TrialPruned as err:
        if main_process:
            write_result(
                paths,
                PRUNED,
                error=None,
                pruned=str(err),
                final_step=err.step,
                **_best_of_run(paths, []),
            )
            print(f"[dreamsweep] {err}", flush=True)
        return EXIT_RECORDED_FAILURE
    except TrainingDiverged as err:
        if main_process:
            write_result(paths, FAILED, error=str(err))
            print(f"[dreamsweep] run failed: {err}", file=sys.stderr, flush=True)
        return EXIT_RECORDED_FAILURE
    except Exception as err:
        if main_process:
            write_result(
                paths,
                FAILED,
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
            )
        raise
    if main_process:
        write_result(paths, COMPLETE, error=None, **fields)
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dreamsweep.worker <run folder>/config.yaml")
    sys.exit(main(sys.argv[1]))
