"""Pretrain the toy-world UNet + text encoder on an endless stream of world pictures.

Resumable by design: the data of step k is a pure function of (seed, k), the noise too, and
model/optimizer/EMA/step are saved atomically every few minutes. The learning rate is warm-up
then constant, so a resumed run with a longer budget just keeps going; an EMA of the weights
stands in for the final decay a fixed-length schedule would give. Without a work checkpoint
it warm-starts from a pipeline folder (the committed base), continuing its step count.
Offset noise (0.1) from step 0: without it the SD schedule leaves the background colour to
the initial noise and backgrounds ignore the prompt (feasibility study).

An XL design (``XL_DESIGNS``) trains the same way an SDXL-shaped model: two text encoders
conditioning through the SDXL family's encoding, the frozen VAE of the SD toy world.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from tqdm import tqdm
from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from dreamsweep.models.families import sdxl
from dreamsweep.toyworld.checkpoint import Every, load_if_exists, save_atomic
from dreamsweep.toyworld.models import (
    DESIGNS,
    XL_DESIGNS,
    build_text_encoder,
    build_unet,
    build_xl_text_encoders,
    build_xl_unet,
    n_params,
    noise_scheduler,
)
from dreamsweep.toyworld.pipeline import assemble, assemble_xl, save_folder
from dreamsweep.toyworld.world import SIZE, hash_seed, world_batch


@dataclass(frozen=True)
class BaseConfig:
    design: str = "f2"
    seed: int = 0
    batch_size: int = 48
    lr: float = 5e-4
    warmup: int = 300
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    offset_noise: float = 0.1  # without it backgrounds ignore the prompt (study)
    min_snr_gamma: float = 5.0  # Min-SNR weighting: faster convergence at equal steps
    ema_decay: float = 0.999
    checkpoint_minutes: float = 5.0
    snapshot_minutes: float = 30.0

    @property
    def is_xl(self) -> bool:
        return self.design in XL_DESIGNS


@dataclass
class Trainer:
    config: BaseConfig
    work: Path
    tokenizer: CLIPTokenizer
    vae: AutoencoderKL
    unet: torch.nn.Module
    text_encoders: dict[str, torch.nn.Module]  # by pipeline component name
    ema: dict
    optimizer: torch.optim.Optimizer
    lr_schedule: torch.optim.lr_scheduler.LambdaLR
    step: int = 0
    train_seconds: float = 0.0

    @property
    def checkpoint_path(self) -> Path:
        return self.work / "base_checkpoint.pt"

    def parameters(self) -> list[torch.nn.Parameter]:
        """The trained parameters in a fixed order (UNet, then each text encoder)."""
        params = list(self.unet.parameters())
        for module in self.text_encoders.values():
            params += list(module.parameters())
        return params


def setup(config: BaseConfig, work: Path, warm_start: Path | None = None) -> Trainer:
    """Resume from the work checkpoint; else warm-start from a pipeline folder (weights only,
    e.g. the committed base, since only committed files outlive a session); else fresh."""
    state = load_if_exists(work / "base_checkpoint.pt")
    source = None if state is not None else _warm_source(work, warm_start)
    parts = source or work
    tokenizer = CLIPTokenizer.from_pretrained(parts / "tokenizer")
    vae = AutoencoderKL.from_pretrained(parts / "vae").eval().requires_grad_(False)
    torch.manual_seed(config.seed)
    unet, texts = _build(config.design, tokenizer) if source is None else _load(config, source)
    params = list(unet.parameters()) + [p for m in texts.values() for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    warmup = config.warmup
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    ema = {name: copy.deepcopy(m.state_dict()) for name, m in [("unet", unet), *texts.items()]}
    trainer = Trainer(config, work, tokenizer, vae, unet, texts, ema, optimizer, lr_schedule)
    if state is not None:
        _restore(trainer, state)
    elif source is not None:
        info = _read_info(source)
        # Carry the step on so the data stream continues instead of replaying seen batches.
        trainer.step, trainer.train_seconds = info.get("step", 0), info.get("train_minutes", 0) * 60
    return trainer


def _build(design: str, tokenizer: CLIPTokenizer) -> tuple[torch.nn.Module, dict]:
    """Fresh UNet and text encoder(s) of a design."""
    if design in XL_DESIGNS:
        xl = XL_DESIGNS[design]
        unet = build_xl_unet(xl)
        first, second = build_xl_text_encoders(xl, tokenizer)
        sdxl.check_sizes(unet, first, second)
        return unet, {"text_encoder": first, "text_encoder_2": second}
    if design not in DESIGNS:
        known = ", ".join([*DESIGNS, *XL_DESIGNS])
        raise ValueError(f"unknown toy-world design {design!r}: use one of {known}")
    return build_unet(DESIGNS[design]), {"text_encoder": build_text_encoder(tokenizer)}


def _load(config: BaseConfig, source: Path) -> tuple[torch.nn.Module, dict]:
    """UNet and text encoder(s) of a pipeline folder (a warm start)."""
    unet = UNet2DConditionModel.from_pretrained(source / "unet")
    texts = {"text_encoder": CLIPTextModel.from_pretrained(source / "text_encoder")}
    if config.is_xl:
        texts["text_encoder_2"] = CLIPTextModelWithProjection.from_pretrained(
            source / "text_encoder_2"
        )
        sdxl.check_sizes(unet, texts["text_encoder"], texts["text_encoder_2"])
    return unet, texts


def _warm_source(work: Path, warm_start: Path | None) -> Path | None:
    """The pipeline folder to warm-start from, if the work dir has no VAE of its own."""
    if warm_start is None or not (warm_start / "unet").exists():
        if not (work / "vae").exists():
            raise FileNotFoundError(f"no {work / 'vae'}: run the vae step or pass a warm start")
        return None
    return warm_start


def _read_info(folder: Path) -> dict:
    info = folder / "toyworld_info.json"
    return json.loads(info.read_text()) if info.exists() else {}


def _restore(trainer: Trainer, state: dict) -> None:
    """Load a work checkpoint; the design must match, other settings may change on resume."""
    if state["config"]["design"] != trainer.config.design:
        saved = state["config"]["design"]
        raise ValueError(f"checkpoint design {saved} != {trainer.config.design}")
    trainer.unet.load_state_dict(state["unet"])
    for name, module in trainer.text_encoders.items():
        module.load_state_dict(state[name])
    trainer.optimizer.load_state_dict(state["optimizer"])
    trainer.lr_schedule.load_state_dict(state["lr_schedule"])
    for group in trainer.optimizer.param_groups:  # a changed --lr wins over the saved one
        group["initial_lr"] = trainer.config.lr
    trainer.lr_schedule.base_lrs = [trainer.config.lr] * len(trainer.optimizer.param_groups)
    trainer.ema = state["ema"]
    if "text" in trainer.ema:  # checkpoints written before the text encoders had names
        trainer.ema["text_encoder"] = trainer.ema.pop("text")
    trainer.step, trainer.train_seconds = state["step"], state["train_seconds"]


def save(trainer: Trainer) -> None:
    state = {
        "config": asdict(trainer.config),
        "unet": trainer.unet.state_dict(),
        **{name: module.state_dict() for name, module in trainer.text_encoders.items()},
        "optimizer": trainer.optimizer.state_dict(),
        "lr_schedule": trainer.lr_schedule.state_dict(),
        "ema": trainer.ema,
        "step": trainer.step,
        "train_seconds": trainer.train_seconds,
    }
    save_atomic(state, trainer.checkpoint_path)


def _loss(trainer: Trainer) -> torch.Tensor:
    """Epsilon loss with offset noise and Min-SNR weights on one deterministic batch."""
    c, step = trainer.config, trainer.step
    batch = world_batch(c.seed, step, c.batch_size)
    torch.manual_seed(hash_seed(c.seed, step, 1))  # the noise of step k is fixed too
    with torch.no_grad():
        latents = trainer.vae.encode(batch.pixels).latent_dist.sample()
        latents = latents * trainer.vae.config.scaling_factor
    noise = torch.randn_like(latents)
    noise = noise + c.offset_noise * torch.randn(latents.shape[0], latents.shape[1], 1, 1)
    scheduler = noise_scheduler()
    t = torch.randint(0, scheduler.config.num_train_timesteps, (latents.shape[0],))
    noisy = scheduler.add_noise(latents, noise, t)
    pred = trainer.unet(noisy, t, **_unet_conditioning(trainer, batch.captions)).sample
    alphas = scheduler.alphas_cumprod[t]
    snr = alphas / (1 - alphas)
    weight = snr.clamp(max=c.min_snr_gamma) / snr
    return (weight * ((pred - noise) ** 2).mean(dim=(1, 2, 3))).mean()


def _unet_conditioning(trainer: Trainer, captions: list[str]) -> dict:
    """The UNet's conditioning keywords. XL: the SDXL family's encoding, time ids of an uncropped
    32 px picture, empty captions (the 10% dropout) zeroed as the pipeline's unconditional
    branch is (force_zeros_for_empty_prompt). SD: the last hidden state of the one encoder."""
    if trainer.config.is_xl:
        encoders = (trainer.text_encoders["text_encoder"], trainer.text_encoders["text_encoder_2"])
        tokenizers = (trainer.tokenizer, trainer.tokenizer)
        ids = sdxl.time_ids((SIZE, SIZE))
        conditioning = sdxl.encode_prompts(*encoders, *tokenizers, captions, ids)
        return sdxl.drop_empty_prompts(conditioning, captions).unet_kwargs()
    ids = sdxl.tokenize(trainer.tokenizer, captions)
    return {"encoder_hidden_states": trainer.text_encoders["text_encoder"](ids)[0]}


def _update_ema(trainer: Trainer) -> None:
    decay = min(trainer.config.ema_decay, (1 + trainer.step) / (10 + trainer.step))
    for key, module in [("unet", trainer.unet), *trainer.text_encoders.items()]:
        ema = trainer.ema[key]
        for name, value in module.state_dict().items():
            if value.dtype.is_floating_point:
                ema[name].mul_(decay).add_(value.detach(), alpha=1 - decay)


def train_step(trainer: Trainer) -> float:
    loss = _loss(trainer)
    trainer.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(trainer.parameters(), trainer.config.grad_clip)
    trainer.optimizer.step()
    trainer.lr_schedule.step()
    trainer.step += 1
    _update_ema(trainer)
    return loss.item()


def snapshot(trainer: Trainer, folder: Path, use_ema: bool = True) -> Path:
    """Write the current (EMA) weights as a StableDiffusion(XL)Pipeline folder."""
    modules = {"unet": trainer.unet, **trainer.text_encoders}
    modules = {name: copy.deepcopy(module) for name, module in modules.items()}
    if use_ema:
        for name, module in modules.items():
            module.load_state_dict(trainer.ema[name])
    if trainer.config.is_xl:
        pipe = assemble_xl(vae=trainer.vae, tokenizer=trainer.tokenizer, **modules)
    else:
        pipe = assemble(vae=trainer.vae, tokenizer=trainer.tokenizer, **modules)
    save_folder(pipe, folder)
    info = {"step": trainer.step, "train_minutes": trainer.train_seconds / 60, "ema": use_ema}
    (folder / "toyworld_info.json").write_text(json.dumps(info, indent=1))
    return folder


def train(trainer: Trainer, minutes: float, log=print, on_snapshot=None) -> None:
    """Train for ``minutes`` of wall time, checkpointing and snapshotting as it goes;
    ``on_snapshot(trainer, folder)`` runs after each snapshot (evaluation, export)."""
    c = trainer.config
    texts = " ".join(f"{name} {n_params(m)}" for name, m in trainer.text_encoders.items())
    sizes = f"unet {n_params(trainer.unet)} {texts} params"
    log(f"start step {trainer.step}, {sizes}, config {asdict(c)}")
    checkpoint_due, snapshot_due = Every(c.checkpoint_minutes * 60), Every(c.snapshot_minutes * 60)
    deadline = time.monotonic() + minutes * 60
    bar = tqdm(initial=trainer.step, desc="base", mininterval=30, unit="step")
    window: list[float] = []
    while time.monotonic() < deadline:
        start = time.monotonic()
        window.append(train_step(trainer))
        trainer.train_seconds += time.monotonic() - start
        bar.update(1)
        if trainer.step % 100 == 0:
            mean = sum(window) / len(window)
            log(f"step {trainer.step} loss {mean:.4f} minutes {trainer.train_seconds / 60:.1f}")
            bar.set_postfix(loss=f"{mean:.4f}")
            window = []
        if checkpoint_due():
            save(trainer)
        if snapshot_due():
            _snapshot_all(trainer, on_snapshot)
    bar.close()
    _snapshot_all(trainer, on_snapshot)
    log(f"stopped at step {trainer.step} after {trainer.train_seconds / 60:.1f} train minutes")


def _snapshot_all(trainer: Trainer, on_snapshot) -> None:
    save(trainer)
    snapshot(trainer, trainer.work / "snapshots" / f"step{trainer.step:07d}")
    latest = snapshot(trainer, trainer.work / "snapshots" / "latest")
    if on_snapshot is not None:
        on_snapshot(trainer, latest)
