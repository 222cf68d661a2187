"""One training run in one process group: `python -m dreamsweep.worker <run>/config.yaml`.

Started by train.py (plainly, or under `accelerate launch`); it never composes Hydra config,
it reads the resolved config.yaml of its run folder. Only the main process writes files. The
run is a recipe in torchtune's shape: setup() -> train() -> save() -> cleanup().
"""

# ruff: noqa: E402  (the notice filter below must be in place before diffusers is imported)
from __future__ import annotations

from dreamsweep.console import quiet_library_noise

quiet_library_noise()  # importing diffusers makes transformers log notices about torchvision

import atexit
import logging
import os
import sys
import time
import traceback
from contextlib import suppress
from pathlib import Path

import torch
from accelerate import Accelerator
from omegaconf import OmegaConf

from dreamsweep.atomic import owner
from dreamsweep.best_weights import BestKeeper
from dreamsweep.config import RunConfig, load_config, portable_settings
from dreamsweep.console import start_line
from dreamsweep.evaluation.evaluator import Evaluator, build_scorer
from dreamsweep.metrics.objective import best_cell
from dreamsweep.models.loading import fingerprint, load_components
from dreamsweep.models.saving import export_final, save_base_for_lora
from dreamsweep.runs import (
    COMPLETE,
    EXIT_STORAGE_ERROR,
    FAILED,
    PRUNED,
    RUNNING,
    RunPaths,
    read_cell_scores,
    read_json,
    read_metrics,
    storage_error,
    update_result,
    write_result,
)
from dreamsweep.sweeps.pruning import PruningHook, TrialPruned
from dreamsweep.tracking import open_trackers
from dreamsweep.training import checkpoint as ckpt
from dreamsweep.training.checkpoint import UnsafeCheckpoint
from dreamsweep.training.embeddings import add_trigger, trains_embeddings, with_trigger
from dreamsweep.training.hooks import EvalHook, TrainedWeights, base_weights
from dreamsweep.training.loop import LossWindow, TrainingDiverged, progress_bar, train_step
from dreamsweep.training.setup import build_state, configure_models, prepare_data, unwrapped
from dreamsweep.training.val_loss import Validation, last_validation

# The exit code when result.json holds how the run ended (complete, pruned, or failed with a
# one-line reason such as a diverged loss): train.py reads it and adds no traceback. A crash
# exits 1 with its traceback, a full or read-only disk with EXIT_STORAGE_ERROR.
EXIT_OUTCOME_RECORDED = 0


def record_data(paths: RunPaths, data) -> None:
    """What the run trains on, for the exports' metadata (kohya's `ss_num_train_images`,
    `ss_num_reg_images`, `ss_training_started_at`); a resumed run keeps its first start."""
    started = (read_json(paths.result) or {}).get("training_started_at") or time.time()
    images = {
        "instance_images": int(data.instance.mean.shape[0]),
        "class_images": int(data.prior.mean.shape[0]) if data.prior is not None else 0,
    }
    update_result(paths, data=images, training_started_at=started)


class Recipe:
    """One run: setup() loads everything once, train() runs the steps, save() exports the final
    weights and returns the fields of result.json, cleanup() closes the trackers."""

    def __init__(self, cfg: RunConfig, run_dir: Path, accelerator: Accelerator) -> None:
        self.cfg, self.run_dir, self.acc = cfg, run_dir, accelerator
        self.paths, self.main = RunPaths(run_dir), accelerator.is_main_process
        self.trackers: list = []
        self.train_seconds = 0.0

    def log(self, message: str) -> None:
        if self.main:
            print(f"[dreamsweep] {message}", flush=True)

    def setup(self) -> None:
        """Metric models first (a missing one fails before the base model loads), the base
        model (loaded once) and the training data; then in this order: the baseline evaluation
        from the base weights, the models set up for training, the last checkpoint loaded."""
        cfg, acc = self.cfg, self.acc
        cache_root = Path(cfg.cache_dir).expanduser()
        evaluator = self._evaluator(cache_root)
        components = load_components(cfg.model)
        model_fp = fingerprint(components)  # of the base, before any token is added
        if self.main:
            save_base_for_lora(cfg, components, self.run_dir)
        trigger_ids = None
        if trains_embeddings(cfg):  # step 0 then scores the trigger at its initial vectors
            trigger_ids = add_trigger(cfg, components)
        data = prepare_data(with_trigger(cfg), components, acc, model_fp, cache_root, self.log)
        if self.main:
            record_data(self.paths, data)
        resume_step = ckpt.latest_step(self.paths.checkpoints)
        if self.main:
            threads = torch.get_num_threads()
            print(start_line(self.run_dir, acc.num_processes, acc.device, resume_step, threads))
            self.trackers = open_trackers(cfg, self.run_dir, resume_step=resume_step)
        keeper = BestKeeper.for_run(cfg, self.paths, portable_settings(cfg)) if self.main else None
        validation = Validation(cfg, data, acc.device) if cfg.eval.val_loss else None
        pruning = PruningHook(cfg.optuna, acc)
        self.hook = EvalHook(
            evaluator, validation, self.trackers, self.run_dir, pruning, keeper, self.main
        )
        # The order matters: the base model is scored with its own weights, before
        # configure_models freezes and casts it and before a checkpoint is loaded into it.
        if evaluator is not None:
            evaluator.prepare_baselines(components, model_fp)
            if resume_step == 0:
                self.hook(0, base_weights(components))
        configure_models(cfg, components, acc)
        self.state = build_state(cfg, components, acc, data, trigger_ids)
        self.weights = TrainedWeights(self.state)
        self.start_step = ckpt.resume_latest(acc, self.paths.checkpoints, self.state.ema)
        if self.start_step:
            self.log(f"resuming from the checkpoint at step {self.start_step}")

    def _evaluator(self, cache_root: Path) -> Evaluator | None:
        if not self.cfg.eval.enabled:
            return None
        with self.acc.main_process_first():
            scorer = build_scorer(self.cfg, cache_root) if self.cfg.metrics.scorers else None
        return Evaluator(self.cfg, self.acc, self.run_dir, cache_root, scorer, self.log)

    def train(self) -> None:
        """Steps start+1 .. train.max_steps: losses logged every train.log_every steps (and at
        the last), the hook when it is due, a checkpoint every train.checkpoint_every steps.
        The loss is checked for NaN/inf before anything is scored or saved."""
        t, s = self.cfg.train, self.state
        window, bar = LossWindow(), progress_bar(s, self.start_step)
        started, eval_before = time.perf_counter(), self.hook.seconds
        self.final_step = self.start_step
        for step in range(self.start_step + 1, t.max_steps + 1):
            window.add(step, *train_step(s, step))
            bar.update(1)
            if step % t.log_every == 0 or step == t.max_steps:
                self._log_losses(window.take(s), step, bar)
            evaluate = self.hook.due(step)
            save = step % t.checkpoint_every == 0 and step < t.max_steps
            if evaluate or save:
                window.check(s)
            if evaluate:
                paused = self.hook.seconds
                self.hook(step, self.weights.by_name())
                exclude_from_rate(bar, self.hook.seconds - paused)
            if save:
                ckpt.save_checkpoint(
                    self.acc, self.paths.checkpoints, step, t.keep_checkpoints, s.ema
                )
            self.final_step = step
        bar.close()
        self.acc.wait_for_everyone()
        elapsed = time.perf_counter() - started
        self.train_seconds = elapsed - (self.hook.seconds - eval_before)

    def _log_losses(self, values: dict[str, float], step: int, bar) -> None:
        bar.set_postfix(loss=f"{values['train/loss']:.4f}", lr=f"{values['train/lr']:.2e}")
        for tracker in self.trackers:
            tracker.log(values, step)

    def save(self) -> dict:
        """The final weights (main process); the fields of result.json."""
        fields = {
            "final_step": self.final_step,
            "num_processes": self.acc.num_processes,
            # CPU threads per process of this attempt: config.yaml's launcher.threads unless a
            # resume was told otherwise (launch.run_threads warned then)
            "threads": torch.get_num_threads(),
            "weights_in_sync": weights_in_sync(self.acc, self.state.unet),
            # wall time of this attempt: training (with checkpoints) vs all evaluation
            "seconds": {
                "train": round(self.train_seconds, 2),
                "eval": round(self.hook.seconds, 2),
            },
        }
        if self.main:
            s, settings = self.state, portable_settings(self.cfg)
            export_final(self.cfg, unwrapped(s), self.paths.model, settings, s.ema)
            self.log(f"final weights: {self.paths.model}")
            fields.update(best_of_run(self.paths, self.trackers, self.cfg))
            fields.update(last_validation(self.paths))
        return fields

    def cleanup(self, exit_code: int) -> None:
        for tracker in self.trackers:
            tracker.finish(exit_code)


def exclude_from_rate(bar, seconds: float) -> None:
    """Shift the training bar's clock past an evaluation, so its rate and ETA are training's
    (tqdm's unpause would also drop training time since its last print)."""
    if not getattr(bar, "disable", True):
        bar.start_t += seconds
        bar.last_print_t += seconds


def run(cfg: RunConfig, run_dir: Path, accelerator: Accelerator) -> dict:
    """The recipe from setup to cleanup; returns the fields for result.json."""
    recipe = Recipe(cfg, run_dir, accelerator)
    exit_code = 1
    try:
        recipe.setup()
        recipe.train()
        fields = recipe.save()
        exit_code = 0
    finally:
        recipe.cleanup(exit_code)
    return fields


def best_of_run(paths: RunPaths, trackers: list, cfg: RunConfig) -> dict:
    """The run's objective is its best cell's (the best checkpoint and sampling setting), with
    its 95% bootstrap interval (verdicts.py), which a sweep puts on the Optuna trial."""
    best = best_cell([r for r in read_metrics(paths) if r.get("kind") == "eval"])
    if best is None:
        return {"objective": None, "best": None}
    interval = best_interval(paths, best, cfg)
    summary = {"best/objective": best["objective"], "best/cell": best["cell"]}
    if interval is not None:
        summary.update({"best/objective_low": interval[0], "best/objective_high": interval[1]})
    for tracker in trackers:
        tracker.summary({**summary, "best/step": best["step"]})
    return {"objective": best["objective"], "best": best, "objective_interval": interval}


def best_interval(paths: RunPaths, best: dict, cfg: RunConfig) -> list[float] | None:
    """The 95% interval of the best cell's objective, from its kept per-sample scores."""
    from dreamsweep import verdicts

    saved = read_cell_scores(paths.root, best["step"], best["cell"])
    metrics = cfg.metrics
    samples = verdicts.CellSamples.from_saved(
        saved.get("samples"), metrics.objective, metrics.drift_penalty
    )
    found = verdicts.interval(samples) if samples is not None else None
    return list(found) if found else None


def weights_in_sync(accelerator: Accelerator, model: torch.nn.Module) -> bool:
    """Every process holds the same weights (gradients were synchronised); a cheap checksum."""
    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    checksum = torch.stack([flat.sum(), flat.abs().sum(), (flat * flat).sum()])
    gathered = accelerator.gather(checksum.to(accelerator.device).reshape(1, 3)).cpu()
    return bool((gathered == gathered[0]).all())


def main(config_file: str) -> int:
    """EXIT_OUTCOME_RECORDED when result.json holds the outcome; EXIT_STORAGE_ERROR when the
    disk is full or read-only; a crash raises (exit 1), its traceback also in result.json."""
    run_dir = Path(config_file).resolve().parent
    paths = RunPaths(run_dir)
    cfg = load_config(OmegaConf.load(config_file))
    torch.use_deterministic_algorithms(True, warn_only=True)
    # cpu=True on a CPU-only machine: ranks started by torchrun then use the gloo backend.
    accelerator = Accelerator(
        mixed_precision=cfg.launcher.mixed_precision,
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=cfg.train.grad_accum,
    )
    try:
        return _run_and_record(cfg, run_dir, paths, accelerator)
    finally:  # every path, failures too: the process group goes down before the process
        accelerator.end_training()  # ends (the exit itself is exit_without_finalizing's)


def _run_and_record(
    cfg: RunConfig, run_dir: Path, paths: RunPaths, accelerator: Accelerator
) -> int:
    """Train, and record in result.json how it ended."""
    main_process = accelerator.is_main_process
    try:
        if main_process:
            write_result(paths, RUNNING, final_step=None, error=None, objective=None, owner=owner())
        fields = run(cfg, run_dir, accelerator)
    except TrialPruned as err:
        if main_process:  # train.py says it, once
            pruned = dict(error=None, pruned=str(err), final_step=err.step)
            write_result(paths, PRUNED, **pruned, **best_of_run(paths, [], cfg))
        return EXIT_OUTCOME_RECORDED
    except (TrainingDiverged, UnsafeCheckpoint) as err:  # train.py prints it in one line
        if main_process:
            write_result(paths, FAILED, error=str(err))
        return EXIT_OUTCOME_RECORDED
    except Exception as err:
        if (message := storage_error(err, run_dir)) is not None:
            return _storage_failure(paths, message, main_process)
        if main_process:
            error = f"{type(err).__name__}: {err}"
            write_result(paths, FAILED, error=error, traceback=traceback.format_exc())
        raise
    if main_process:
        try:
            write_result(paths, COMPLETE, error=None, **fields)
        except OSError as err:
            return _storage_failure(paths, storage_error(err, run_dir) or str(err), True)
    return EXIT_OUTCOME_RECORDED


def _storage_failure(paths: RunPaths, message: str, main_process: bool) -> int:
    """Record the failure if the disk still lets us (else the next reader finds the run
    `stale`: its owner is gone) and say it in one line."""
    if main_process:
        with suppress(OSError):
            write_result(paths, FAILED, error=message)
        print(f"\nerror: {message}", file=sys.stderr, flush=True)  # below a progress bar
    return EXIT_STORAGE_ERROR


def exit_without_finalizing(code: int) -> None:
    """End the process once its outcome is recorded, skipping the interpreter's teardown:
    with 2+ processes a gloo thread can drop the last all-reduce's tensors after Python began
    finalizing, which aborts the process ("terminate called without an active exception",
    torch 2.13), and the teardown walks the hundreds of thousands of objects the libraries
    made. Exit handlers (W&B's) still run, and the streams are flushed."""
    atexit._run_exitfuncs()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m dreamsweep.worker <run folder>/config.yaml")
    exit_without_finalizing(main(sys.argv[1]))  # a crash raises: Python prints it, exit 1
