"""One training run in one process group: `python -m dreamsweep.worker <run>/config.yaml`.

Started by train.py (plainly, or under `accelerate launch`); it never composes Hydra config,
it reads the resolved config.yaml of its run folder. Only the main process writes files.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

from omegaconf import OmegaConf

from dreamsweep.config import RunConfig, load_config, to_dict
from dreamsweep.runs import COMPLETE, FAILED, RUNNING, RunPaths, write_result

EXIT_RECORDED_FAILURE = 0  # result.json says "failed" and why; no launcher trace on top


def run(cfg: RunConfig, run_dir: Path, accelerator) -> dict:
    """Train (resuming from the last checkpoint), then export; returns fields for result.json."""
    from dreamsweep.models.loading import load_components
    from dreamsweep.tracking import open_trackers
    from dreamsweep.training import checkpoint as ckpt
    from dreamsweep.training.loop import train
    from dreamsweep.training.setup import build_state, configure_models, prepare_data, unwrapped

    paths, main = RunPaths(run_dir), accelerator.is_main_process
    log = _logger(main)
    components = load_components(cfg.model)
    data = prepare_data(cfg, components, accelerator, Path(cfg.cache_dir).expanduser(), log)
    configure_models(cfg, components, accelerator)
    state = build_state(cfg, components, accelerator, data)
    start = ckpt.resume_latest(accelerator, paths.checkpoints)
    if start:
        log(f"resuming from the checkpoint at step {start}")
    trackers = open_trackers(cfg, run_dir, resume_step=start) if main else []
    exit_code = 1
    try:
        step = train(
            state,
            start,
            log=lambda values, step: [t.log(values, step) for t in trackers],
            save=lambda step: ckpt.save_checkpoint(
                accelerator, paths.checkpoints, step, cfg.train.keep_checkpoints
            ),
        )
        accelerator.wait_for_everyone()
        in_sync = weights_in_sync(accelerator, state.unet)
        if main:
            ckpt.export_pipeline(unwrapped(state), paths.model, to_dict(cfg), ema=state.ema)
            log(f"final weights: {paths.model}")
        exit_code = 0
    finally:
        for tracker in trackers:
            tracker.finish(exit_code)
    return {
        "final_step": step,
        "num_processes": accelerator.num_processes,
        "weights_in_sync": in_sync,
    }


def weights_in_sync(accelerator, model) -> bool:
    """Every process holds the same weights (gradients were synchronised); a cheap checksum."""
    import torch

    flat = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    checksum = torch.stack([flat.sum(), flat.abs().sum(), (flat * flat).sum()])
    gathered = accelerator.gather(checksum.to(accelerator.device).reshape(1, 3)).cpu()
    return bool((gathered == gathered[0]).all())


def _logger(main: bool):
    def log(message: str) -> None:
        if main:
            print(f"[dreamsweep] {message}", flush=True)

    return log


def main(config_file: str) -> int:
    """Exit code 0: the outcome is in result.json (complete, or failed with a message such as
    a diverged loss); 1: a crash, with its traceback also in result.json."""
    import torch
    from accelerate import Accelerator

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
