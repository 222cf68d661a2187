"""The training step (Ruiz et al. 2022, with prior preservation) and its loss bookkeeping.

A step keeps its losses as tensors on the device and never waits for them: they are summed
in a LossWindow, which is reduced across processes (one all-reduce, one host sync) only when
the losses are logged (train.log_every) or when an evaluation or a checkpoint needs to know
that the weights are still finite. Gradients of the micro-batches before the last one are
accumulated without an all-reduce (accelerator.accumulate).
"""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from dreamsweep.models.families import Conditioning, family
from dreamsweep.training.batches import Batch, draw_batch, seed_global_rng, step_generator
from dreamsweep.training.ema import ema_update
from dreamsweep.training.loss import StepLosses, dreambooth_loss, min_snr_weights, training_noise
from dreamsweep.training.pivotal import phase_of
from dreamsweep.training.setup import TrainState

LOSS_KEYS = ("train/loss", "train/instance_loss", "train/prior_loss")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message says at which step and what to try."""


def _conditioning(s: TrainState, batch: Batch) -> Conditioning:
    """The batch's prompts encoded (cached when the text encoders are frozen), with each
    image's own time ids where the family conditions on them."""
    table, f = s.data.table, family(s.components)
    if s.text_encoder is None:
        text = table.embeddings.select(batch.prompt_idx)
    else:
        ids = table.ids[batch.prompt_idx].to(s.accelerator.device)
        text = f.encode_ids(s.text_encoders, ids)
    return f.with_time_ids(text, batch.time_ids)


def micro_batch_losses(s: TrainState, step: int, micro: int) -> StepLosses:
    """The DreamBooth loss of one micro-batch, drawn by its own seeded generator."""
    t, device = s.cfg.train, s.accelerator.device
    scheduler, f = s.components.noise_scheduler, family(s.components)
    g = step_generator(t.seed, step, micro, s.accelerator.process_index)
    seed_global_rng(t.seed, step, micro, s.accelerator.process_index)
    batch = draw_batch(s.data, t.batch_size, g)
    latents = batch.latents * s.components.vae.config.scaling_factor
    noise = training_noise(latents, t, g)
    timesteps = f.sample_timesteps(scheduler, latents.shape[0], g)
    latents, noise, timesteps = (x.to(device) for x in (latents, noise, timesteps))
    noisy = scheduler.add_noise(latents, noise, timesteps)
    pred = s.unet(noisy, timesteps, **_conditioning(s, batch).unet_kwargs()).sample
    target = f.target(scheduler, latents, noise, timesteps)
    weights = min_snr_weights(scheduler, timesteps, t.snr_gamma) if t.snr_gamma else None
    return dreambooth_loss(pred, target, batch.n_instance, s.cfg.prior.weight, weights)


def _stacked(losses: StepLosses) -> torch.Tensor:
    """[total, instance, prior] as one detached tensor (prior 0 without prior preservation)."""
    prior = losses.prior if losses.prior is not None else torch.zeros_like(losses.total)
    return torch.stack((losses.total, losses.instance, prior)).detach()


def train_step(s: TrainState, step: int) -> tuple[torch.Tensor, float]:
    """One optimiser step over train.grad_accum micro-batches. Returns the step's mean losses
    [total, instance, prior] on the device (nothing waits for them), and the LR it used."""
    acc, accum = s.accelerator, s.cfg.train.grad_accum
    if s.phases is not None:  # pivotal tuning: this step's phase trains
        s.phases.enter(step)
    phase_two = s.phases is not None and s.phases.current == 2
    lr = s.lr_schedule.get_last_lr()[1 if phase_two else 0]  # pivotal: the phase's LR
    losses = None
    for micro in range(accum):
        with acc.accumulate(*s.trained_modules):  # all-reduce on the last micro-batch only
            parts = micro_batch_losses(s, step, micro)
            acc.backward(parts.total)  # Accelerate divides it by grad_accum
        stacked = _stacked(parts)
        losses = stacked if losses is None else losses + stacked
    clip_gradients(s)
    optimizer_step(s)
    for rows in s.frozen_rows:  # textual inversion: only the new tokens' rows change
        rows.restore()
    s.lr_schedule.step()
    s.optimizer.zero_grad(set_to_none=True)
    if s.ema is not None:
        ema_update(s.ema, s.ema_tracked)
    return losses / accum, lr


def clip_gradients(s: TrainState) -> None:
    """Clip the gradients' total norm as torch's clip_grad_norm_ does (scale them by
    min(1, max_norm / (norm + 1e-6))) with less work per step than accelerator.clip_grad_norm_,
    whose per-parameter bookkeeping serves FSDP's DTensors (unused here): one foreach norm,
    and on CPU, where reading the norm waits for nothing, no scaling at all when it does not
    clip. A fused AdamW scales them inside its kernel: it divides the gradients by its
    `grad_scale` (the attribute GradScaler sets for it), which saves a pass over them. Tested
    down to the oldest torch pyproject allows (tests/test_torch_floor.py)."""
    s.accelerator.unscale_gradients()  # fp16: the loss scale out of the gradients first
    grads = [p.grad for p in s.trained if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coef = s.cfg.optim.max_grad_norm / (norm + 1e-6)
    if norm.device.type == "cpu" and coef.item() >= 1.0:
        return
    coef = coef.clamp(max=1.0)
    optimizer = _torch_optimizer(s)
    if optimizer.defaults.get("fused"):
        optimizer.grad_scale = 1.0 / coef  # fp16: GradScaler takes it as already unscaled
    else:
        torch._foreach_mul_(grads, coef)


def optimizer_step(s: TrainState) -> None:
    """The optimizer's step with the clipping scale of this step (then dropped)."""
    s.optimizer.step()
    vars(_torch_optimizer(s)).pop("grad_scale", None)


def _torch_optimizer(s: TrainState) -> torch.optim.Optimizer:
    """The optimizer inside Accelerate's wrapper."""
    return getattr(s.optimizer, "optimizer", s.optimizer)


class LossWindow:
    """The losses of the steps since they were last logged, summed on the device."""

    def __init__(self) -> None:
        self.sums: torch.Tensor | None = None
        self.first_step = self.last_step = 0
        self.lr = 0.0  # of the last step

    def add(self, step: int, losses: torch.Tensor, lr: float) -> None:
        if self.sums is None:
            self.sums, self.first_step = losses, step
        else:
            self.sums = self.sums + losses
        self.last_step, self.lr = step, lr

    def check(self, s: TrainState) -> list[float]:
        """The mean losses over the window and the processes; raises TrainingDiverged on every
        process alike when one is NaN/inf. Every process must call it (an all-reduce)."""
        if self.sums is None:
            return []
        steps = self.last_step - self.first_step + 1
        means = s.accelerator.reduce(self.sums / steps, reduction="mean").tolist()
        if not all(map(math.isfinite, means)):
            raise _diverged(s, means[0], self.first_step, self.last_step)
        return means

    def take(self, s: TrainState) -> dict[str, float]:
        """The logged values (mean losses since the last log, the last step's LR); starts
        anew."""
        means = self.check(s)
        self.sums = None
        logged = dict(zip(LOSS_KEYS, means, strict=True))
        if s.data.prior is None:
            del logged["train/prior_loss"]
        logged["train/lr"] = self.lr
        if s.phases is not None:  # pivotal tuning: where the phase boundary falls
            logged["train/phase"] = phase_of(s.cfg, self.last_step)
        return logged


def _diverged(s: TrainState, loss: float, first: int, last: int) -> TrainingDiverged:
    o, every = s.cfg.optim, s.cfg.train.log_every
    where = f"at step {last}"
    if first != last:
        where = (
            f"between steps {first} and {last} (the loss is checked when it is logged, every "
            f"train.log_every={every} steps, and before an evaluation or a checkpoint)"
        )
    return TrainingDiverged(
        f"loss became {loss} {where}. Try a lower learning rate (optim.lr={o.lr}), full "
        f"precision (launcher.mixed_precision=no), or a smaller optim.max_grad_norm "
        f"({o.max_grad_norm})."
    )


def progress_bar(s: TrainState, start_step: int) -> tqdm:
    """The main process's bar; its loss and LR are updated when they are logged."""
    return tqdm(
        total=s.cfg.train.max_steps,
        initial=start_step,
        desc="train",
        unit="step",
        disable=not s.accelerator.is_main_process,
        dynamic_ncols=True,
    )
