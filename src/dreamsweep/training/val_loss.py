"""A validation loss that shows overtraining without sampling: the denoising loss at a fixed set
of timesteps with fixed noise, so it is exactly repeatable across checkpoints and runs.

Sets: `instance` (the subject's training photos: how closely the model fits them), `class`
(eval.val_class_images class images the run never trains on, with prior preservation on or off:
it rises as the class prior is overwritten), `class_train` (the class images prior preservation
trains on: its gap below `class` is the prior set memorised) and `held_out` (photos of the
subject in `eval.val_dir`, never trained on: it turns up when the model starts to memorise
instead of generalise). Each image is its cached VAE latent mean (no crop/flip or posterior
sampling), paired with its own prompt.
"""

from __future__ import annotations

import torch

from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import Conditioning, family
from dreamsweep.training.latents import LatentBank

NOISE_SEED = 20221208  # fixed: every evaluation, checkpoint and run sees the same noise


def timesteps(num_train_timesteps: int, buckets: int) -> list[int]:
    """The middle of `buckets` equal slices of the schedule: low, middle and high noise."""
    width = num_train_timesteps / buckets
    return [int((k + 0.5) * width) for k in range(buckets)]


@torch.no_grad()
def denoising_loss(
    c: SDComponents,
    bank: LatentBank,
    conditioning: Conditioning | torch.Tensor,
    buckets: int,
    device: torch.device | str = "cpu",
) -> float:
    """Mean MSE over images x fixed timesteps; conditioning: one row per image (a tensor:
    hidden states [images, tokens, dim]), with each image's time ids where the family uses
    them."""
    f = family(c)
    if isinstance(conditioning, torch.Tensor):
        conditioning = Conditioning(conditioning)
    ids = bank.time_ids[:, 0] if bank.time_ids is not None else None
    unet_kwargs = f.with_time_ids(conditioning.to(device), ids).unet_kwargs()
    latents = bank.mean[:, 0].to(device) * c.vae.config.scaling_factor
    scheduler = c.noise_scheduler
    steps = timesteps(scheduler.config.num_train_timesteps, buckets)
    generator = torch.Generator().manual_seed(NOISE_SEED)
    noise = torch.randn((len(steps), *latents.shape), generator=generator).to(device)
    was_training = c.unet.training
    c.unet.eval()
    try:
        losses = []
        for k, t in enumerate(steps):
            t_batch = torch.full((latents.shape[0],), t, dtype=torch.long, device=device)
            noisy = scheduler.add_noise(latents, noise[k], t_batch)
            pred = c.unet(noisy, t_batch, **unet_kwargs).sample
            target = f.target(scheduler, latents, noise[k], t_batch)
            losses.append(torch.nn.functional.mse_loss(pred.float(), target.float()))
    finally:
        c.unet.train(was_training)
    return float(torch.stack(losses).mean())


@torch.no_grad()
def embed(c: SDComponents, ids: torch.Tensor, device: torch.device | str = "cpu") -> Conditioning:
    """Text conditioning from token ids with the components' text encoders as they are now."""
    f = family(c)
    encoders = f.text_encoders(c)
    was_training = [m.training for m in encoders]
    for m in encoders:
        m.eval()
    try:
        return f.encode_ids(encoders, ids.to(device))
    finally:
        for m, training in zip(encoders, was_training, strict=True):
            m.train(training)


def validation_losses(
    c: SDComponents, sets: dict[str, tuple[LatentBank, torch.Tensor]], buckets: int, device
) -> dict[str, float]:
    """`{name: loss}` for each set of (latents, prompt token ids per image)."""
    return {
        name: denoising_loss(c, bank, embed(c, ids, device), buckets, device)
        for name, (bank, ids) in sets.items()
    }


def validation_sets(data) -> dict[str, tuple[LatentBank, torch.Tensor]]:
    """The run's validation sets from its training data (batches.TrainingData)."""
    ids = data.table.ids
    sets = {"instance": (data.instance, ids[data.instance_prompts])}
    if data.held_out_class is not None:
        sets["class"] = data.held_out_class
    if data.prior is not None:
        sets["class_train"] = (data.prior, ids[data.prior_prompts])
    if data.held_out is not None:
        sets["held_out"] = data.held_out
    return sets


class Validation:
    """The validation losses of each weights (one metrics line, kind val, per weights) at
    every evaluation and every eval.val_every steps."""

    def __init__(self, cfg, data, device) -> None:
        self.ev, self.device = cfg.eval, device
        self.sets = validation_sets(data)

    def due(self, step: int, is_eval_step: bool) -> bool:
        every = self.ev.val_every
        return is_eval_step or step == 0 or bool(every and step % every == 0)

    def __call__(self, step: int, weights: dict) -> list[dict]:
        records = []
        for name, use in weights.items():
            with use() as components:
                losses = validation_losses(components, self.sets, self.ev.val_buckets, self.device)
            records.append(
                {"step": step, "weights": name, **{f"val/{k}_loss": v for k, v in losses.items()}}
            )
        return records


def last_validation(paths) -> dict:
    """result.json `val`: the validation losses of the last evaluation (EMA weights when the
    run has them), e.g. for `hydra.sweeper.objectives=[val/class_loss]` (minimize)."""
    from dreamsweep.runs import read_metrics

    val = [r for r in read_metrics(paths) if r.get("kind") == "val" and r["weights"] != "base"]
    if not val:
        return {}
    last = max(r["step"] for r in val)
    at_last = {r["weights"]: r for r in val if r["step"] == last}
    chosen = at_last.get("ema") or next(iter(at_last.values()))
    return {"val": {k: v for k, v in chosen.items() if k != "time"}}
