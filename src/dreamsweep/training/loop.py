"""The training step (Ruiz et al. 2022, with prior preservation) and the loop around it."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from tqdm.auto import tqdm

from dreamsweep.training.batches import draw_batch, step_generator
from dreamsweep.training.ema import trained_parameters
from dreamsweep.training.loss import (
    dreambooth_loss,
    min_snr_weights,
    regression_target,
    training_noise,
)
from dreamsweep.training.setup import TrainState


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message says at which step and what to try."""


def _conditioning(s: TrainState, prompt_idx: torch.Tensor) -> torch.Tensor:
    table = s.data.table
    if s.text_encoder is None:
        return table.embeddings[prompt_idx.to(table.embeddings.device)]
    return s.text_encoder(table.ids[prompt_idx].to(s.accelerator.device))[0]


def train_step(s: TrainState, step: int) -> dict[str, float]:
    """One optimiser step over train.grad_accum micro-batches; returns the logged losses."""
    cfg, acc, scheduler = s.cfg, s.accelerator, s.components.noise_scheduler
    scale = s.components.vae.config.scaling_factor
    sums = {"instance": 0.0, "prior": 0.0, "total": 0.0}
    for micro in range(cfg.train.grad_accum):
        g = step_generator(cfg.train.seed, step, micro, acc.process_index)
        batch = draw_batch(s.data, cfg.train.batch_size, g)
        latents = batch.latents * scale
        noise = training_noise(latents, cfg.train, g)
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=g
        )
        latents, noise, timesteps = (t.to(acc.device) for t in (latents, noise, timesteps))
        noisy = scheduler.add_noise(latents, noise, timesteps)
        pred = s.unet(noisy, timesteps, _conditioning(s, batch.prompt_idx)).sample
        target = regression_target(scheduler, latents, noise, timesteps)
        weights = (
            min_snr_weights(scheduler, timesteps, cfg.train.snr_gamma)
            if cfg.train.snr_gamma
            else None
        )
        losses = dreambooth_loss(pred, target, batch.n_instance, cfg.prior.weight, weights)
        acc.backward(losses.total / cfg.train.grad_accum)
        sums["total"] += losses.total.item() / cfg.train.grad_accum
        sums["instance"] += losses.instance.item() / cfg.train.grad_accum
        if losses.prior is not None:
            sums["prior"] += losses.prior.item() / cfg.train.grad_accum
    logged = _mean_over_ranks(s, sums)
    if not math.isfinite(logged["train/loss"]):
        s.optimizer.zero_grad(set_to_none=True)  # keep the weights of the last good step
        raise TrainingDiverged(
            f"loss became {logged['train/loss']} at step {step}. Try a lower learning rate "
            f"(optim.lr={cfg.optim.lr}), full precision (launcher.mixed_precision=no), or a "
            f"smaller optim.max_grad_norm ({cfg.optim.max_grad_norm})."
        )
    params = [p for group in s.optimizer.param_groups for p in group["params"]]
    acc.clip_grad_norm_(params, cfg.optim.max_grad_norm)
    logged["train/lr"] = s.lr_schedule.get_last_lr()[0]  # the LR this step uses
    s.optimizer.step()
    s.lr_schedule.step()
    s.optimizer.zero_grad(set_to_none=True)
    if s.ema is not None:
        s.ema.step(trained_parameters(acc.unwrap_model(s.unet)))
    return logged


def _mean_over_ranks(s: TrainState, sums: dict[str, float]) -> dict[str, float]:
    """Losses averaged over processes; every rank gets the same numbers (and NaN verdict)."""
    values = torch.tensor(
        [sums["total"], sums["instance"], sums["prior"]], device=s.accelerator.device
    )
    total, instance, prior = s.accelerator.reduce(values, reduction="mean").tolist()
    logged = {"train/loss": total, "train/instance_loss": instance}
    if s.data.prior is not None:
        logged["train/prior_loss"] = prior
    return logged


def train(
    s: TrainState,
    start_step: int,
    log: Callable[[dict[str, float], int], None],
    save: Callable[[int], None],
    evaluate: Callable[[int], None] = lambda step: None,
) -> int:
    """Steps start_step+1 .. train.max_steps; after a step, `evaluate(step)` (it knows which
    steps are eval steps), then `save(step)` every train.checkpoint_every."""
    t = s.cfg.train
    bar = tqdm(
        total=t.max_steps,
        initial=start_step,
        desc="train",
        unit="step",
        disable=not s.accelerator.is_main_process,
        dynamic_ncols=True,
    )
    step = start_step
    for step in range(start_step + 1, t.max_steps + 1):
        logged = train_step(s, step)
        bar.update(1)
        bar.set_postfix(loss=f"{logged['train/loss']:.4f}", lr=f"{logged['train/lr']:.2e}")
        if step % t.log_every == 0 or step == t.max_steps:
            log(logged, step)
        evaluate(step)
        if step % t.checkpoint_every == 0 and step < t.max_steps:
            save(step)
    bar.close()
    return step
