"""One training run in one process group: `python -m dreamsweep.worker <run>/config.yaml`.

Started by train.py (plainly, or under `accelerate launch`); it never composes Hydra config,
it reads the resolved config.yaml of its run folder. Only the main process writes files.
"""

from __future__ import annotations

import sys
import time
import traceback
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path

from omegaconf import OmegaConf

from dreamsweep.best_weights import BestKeeper
from dreamsweep.cells import BASE, scored_weights
from dreamsweep.config import RunConfig, load_config, public_settings
from dreamsweep.runs import (
    COMPLETE,
    EXIT_STORAGE_ERROR,
    FAILED,
    PRUNED,
    RUNNING,
    RunPaths,
    owner,
    storage_error,
    write_result,
)

EXIT_RECORDED_FAILURE = 0  # result.json says "failed" and why; no launcher trace on top


def run(cfg: RunConfig, run_dir: Path, accelerator) -> dict:
    """Evaluate the base model, train (resuming from the last checkpoint) with evaluations
    along the way, then export; returns the fields for result.json."""
    from dreamsweep.console import start_line
    from dreamsweep.models.loading import fingerprint, load_components
    from dreamsweep.models.saving import export_final, save_base_for_lora
    from dreamsweep.sweeps.pruning import PruningHook
    from dreamsweep.tracking import open_trackers
    from dreamsweep.training import checkpoint as ckpt
    from dreamsweep.training.loop import train
    from dreamsweep.training.setup import build_state, configure_models, prepare_data, unwrapped
    from dreamsweep.training.val_loss import last_validation, validation_hook

    paths, main, log = RunPaths(run_dir), accelerator.is_main_process, _logger(accelerator)
    cache_root = Path(cfg.cache_dir).expanduser()
    evaluator = _evaluator(cfg, accelerator, run_dir, cache_root, log)  # metric models first
    components = load_components(cfg.model)
    model_fp = fingerprint(components)
    if main:
        save_base_for_lora(cfg, components, run_dir)
    data = prepare_data(cfg, components, accelerator, model_fp, cache_root, log)
    resume_step = ckpt.latest_step(paths.checkpoints)
    if main:
        print(start_line(run_dir, accelerator.num_processes, accelerator.device, resume_step))
    trackers = open_trackers(cfg, run_dir, resume_step=resume_step) if main else []
    exit_code = 1
    try:
        keeper = BestKeeper.for_run(cfg, paths, public_settings(cfg)) if main else None
        validate = validation_hook(cfg, data, accelerator.device) if main else None
        evaluate = _eval_hook(
            evaluator, trackers, run_dir, PruningHook(cfg.optuna, accelerator), keeper, validate
        )
        if evaluator is not None:  # always from the base weights, before any checkpoint loads
            evaluator.prepare_baselines(components, model_fp)
            if resume_step == 0:
                evaluate(0, {BASE: lambda: nullcontext(components)})
        configure_models(cfg, components, accelerator)
        state = build_state(cfg, components, accelerator, data)
        start = ckpt.resume_latest(accelerator, paths.checkpoints, state.ema)
        if start:
            log(f"resuming from the checkpoint at step {start}")
        started, eval_before = time.perf_counter(), evaluate.timing["eval"]
        step = train(
            state,
            start,
            log=lambda values, step: [t.log(values, step) for t in trackers],
            save=lambda step: ckpt.save_checkpoint(
                accelerator, paths.checkpoints, step, cfg.train.keep_checkpoints, state.ema
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
            export_final(cfg, unwrapped(state), paths.model, public_settings(cfg), state.ema)
            log(f"final weights: {paths.model}")
            fields.update(_best_of_run(paths, trackers))
            fields.update(last_validation(paths))
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


def _eval_hook(
    evaluator, trackers, run_dir: Path, pruning, keeper: BestKeeper | None, validate=None
):
    """evaluate(step, weights): the validation loss when due (main process), then score the
    cells of an eval step, log them, keep the weights of a new best cell (main process), and
    let an Optuna pruner stop the run (the step's best cell is the value reported)."""
    from dreamsweep.eval_outputs import cell_dir

    timing = {"eval": 0.0}

    def evaluate(step: int, weights: dict) -> None:
        is_eval_step = evaluator is not None and step in evaluator.steps
        if validate is not None and (records := validate(step, weights, is_eval_step)):
            for tracker in trackers:
                tracker.log_val(records)
        if not is_eval_step:
            return
        started = time.perf_counter()
        records = evaluator.evaluate(step, weights)
        timing["eval"] += time.perf_counter() - started
        grids = {r["cell"]: cell_dir(run_dir, step, r["cell"]) / "grid.png" for r in records}
        for tracker in trackers:
            tracker.log_eval(records, grids)
        if keeper is not None and step > 0 and (kept := keeper.offer(records, weights)):
            print(f"[dreamsweep] best so far: step {step} {kept['cell']} -> {keeper.folder}")
        values = [r["objective"] for r in records if r["objective"] is not None]
        pruning.report(step, max(values) if values else None)

    evaluate.timing = timing
    return evaluate


def _trained_weights(cfg: RunConfig, state) -> dict:
    """The weights to evaluate, by name (cells.scored_weights): raw, and EMA when it is on."""
    from dreamsweep.training.ema import ema_weights
    from dreamsweep.training.setup import unwrapped

    @contextmanager
    def ema():
        components = unwrapped(state)
        with ema_weights(state.ema, components.unet):
            yield components

    available = {"raw": lambda: nullcontext(unwrapped(state)), "ema": ema}
    return {name: available[name] for name in scored_weights(cfg)}


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
    from dreamsweep.console import quiet_library_noise

    quiet_library_noise()  # before diffusers loads
    import torch
    from accelerate import Accelerator

    from dreamsweep.sweeps.pruning import TrialPruned
    from dreamsweep.training.checkpoint import UnsafeCheckpoint
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
    try:
        if main_process:
            write_result(paths, RUNNING, final_step=None, error=None, objective=None, owner=owner())
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
            )  # train.py says it, once
        return EXIT_RECORDED_FAILURE
    except (TrainingDiverged, UnsafeCheckpoint) as err:  # train.py prints it in one line
        if main_process:
            write_result(paths, FAILED, error=str(err))
        return EXIT_RECORDED_FAILURE
    except Exception as err:
        if (message := storage_error(err, run_dir)) is not None:
            return _storage_failure(paths, message, main_process)
        if main_process:
            write_result(
                paths,
                FAILED,
                error=f"{type(err).__name__}: {err}",
                traceback=traceback.format_exc(),
            )
        raise
    if main_process:
        try:
            write_result(paths, COMPLETE, error=None, **fields)
        except OSError as err:
            return _storage_failure(paths, storage_error(err, run_dir) or str(err), True)
    accelerator.end_training()
    return 0


def _storage_failure(paths: RunPaths, message: str, main_process: bool) -> int:
    """Record the failure if the disk still lets us (else the next reader finds the run
    `stale`: its owner is gone) and say it in one line."""
    if main_process:
        with suppress(OSError):
            write_result(paths, FAILED, error=message)
        print(f"\nerror: {message}", file=sys.stderr, flush=True)  # below a progress bar
    return EXIT_STORAGE_ERROR


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dreamsweep.worker <run folder>/config.yaml")
    sys.exit(main(sys.argv[1]))
