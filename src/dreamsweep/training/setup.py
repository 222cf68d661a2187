"""Everything a run needs before its first step, built in the order the step uses it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.models.attention_processor import AttnProcessor
from diffusers.training_utils import EMAModel

from dreamsweep import prior
from dreamsweep.choices import ATTENTION, METHODS
from dreamsweep.config import RunConfig
from dreamsweep.data.dataset import (
    class_examples,
    class_prompt,
    fill_prompt,
    instance_examples,
    min_image_size,
)
from dreamsweep.data.images import load_folder
from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import family
from dreamsweep.registry import load, pick
from dreamsweep.training.batches import (
    ADAPTER_SALT,
    TrainingData,
    build_prompt_table,
    cache_embeddings,
    training_data,
)
from dreamsweep.training.ema import build_ema, trained_parameters
from dreamsweep.training.embeddings import (
    FrozenRows,
    averaged_module,
    embedding_only,
    train_only_embeddings,
    trains_embeddings,
)
from dreamsweep.training.latents import LatentBank, build_latent_bank
from dreamsweep.training.optim import build_lr_schedule, build_optimizer, param_groups
from dreamsweep.training.pivotal import Phases, is_pivotal

WEIGHT_DTYPES = {"no": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class TrainState:
    cfg: RunConfig
    accelerator: Accelerator
    components: SDComponents  # unwrapped modules (what gets exported)
    unet: torch.nn.Module  # prepared (DDP-wrapped when multi-process)
    text_encoder: torch.nn.Module | None  # prepared when trained, else None
    optimizer: torch.optim.Optimizer
    lr_schedule: object
    ema: EMAModel | None
    data: TrainingData
    # Listed once here, not at every step: what is clipped, and what the EMA averages.
    trained: list[torch.nn.Parameter]
    ema_tracked: list[torch.nn.Parameter]
    # every trained text encoder, prepared, in the family's order (text_encoder first; SDXL:
    # text_encoder_2 next); empty when they are frozen
    text_encoders: tuple[torch.nn.Module, ...] = ()
    # textual inversion: the embedding rows kept as they are, one FrozenRows per text encoder
    frozen_rows: tuple[FrozenRows, ...] = ()
    phases: Phases | None = None  # pivotal tuning: which parameters a step trains

    @property
    def trained_modules(self) -> tuple[torch.nn.Module, ...]:
        """The prepared modules whose gradients are synchronised (accelerator.accumulate)."""
        return (self.unet, *self.text_encoders)


def configure_models(cfg: RunConfig, c: SDComponents, accelerator: Accelerator) -> None:
    """Freeze what is not trained; cast frozen parts to the mixed-precision dtype.

    Called after prepare_data, which samples class images and encodes latents in float32.
    """
    dtype = WEIGHT_DTYPES[accelerator.mixed_precision]
    f = family(c)
    vae_dtype = dtype if cfg.model.vae_path else f.vae_dtype(dtype)  # a VAE given: fp16-safe
    c.vae.requires_grad_(False).eval().to(accelerator.device)
    if vae_dtype != torch.float32:
        c.vae.to(vae_dtype)
    c.unet.requires_grad_(True).train().to(accelerator.device)
    for encoder in f.text_encoders(c):
        if cfg.train.text_encoder:
            encoder.requires_grad_(True).train().to(accelerator.device)
        else:
            encoder.requires_grad_(False).eval().to(accelerator.device, dtype)
    name = cfg.method.then if is_pivotal(cfg) else cfg.method.name  # pivotal: its phase 2's
    method = pick(METHODS, name, "method.then" if is_pivotal(cfg) else "method")
    if method.add_trained:  # e.g. LoRA: the base frozen, the adapters trained (float32 here)
        # peft draws the initial adapters from torch's global RNG: from train.seed, not from
        # whatever the process drew before (class images made or found in the cache)
        devices = [accelerator.device] if accelerator.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.train.seed ^ ADAPTER_SALT)
            load(method.add_trained)(cfg, c)
        for module in (c.unet, *f.text_encoders(c)):
            module.to(accelerator.device)
    for module in f.unread_text_modules(c):
        module.requires_grad_(False)
    if trains_embeddings(cfg):  # of each text encoder, only the token embeddings learn
        if embedding_only(cfg):
            c.unet.requires_grad_(False)
        for encoder in f.text_encoders(c):
            encoder.train().to(accelerator.device, torch.float32)
            train_only_embeddings(encoder)
    if cfg.train.gradient_checkpointing:
        c.unet.enable_gradient_checkpointing()
        if cfg.train.text_encoder:
            for encoder in f.text_encoders(c):
                encoder.gradient_checkpointing_enable()
    load(pick(ATTENTION, cfg.train.attention, "train.attention").build)(c.unet)


def sdpa_attention(unet: torch.nn.Module) -> None:
    """train.attention=sdpa: diffusers' default processor (torch scaled_dot_product_attention)."""


def eager_attention(unet: torch.nn.Module) -> None:
    """train.attention=eager: the plain attention processor (matmul + softmax)."""
    unet.set_attn_processor(AttnProcessor())


def xformers_attention(unet: torch.nn.Module) -> None:
    """train.attention=xformers: memory-efficient attention (CUDA; checked by validate_machine)."""
    unet.enable_xformers_memory_efficient_attention()


def prepare_data(
    cfg: RunConfig,
    c: SDComponents,
    accelerator: Accelerator,
    model_fp: str,
    cache_root: Path,
    log,
) -> TrainingData:
    """Class images (generated once into the shared cache), then latents of every image."""
    for module in c.modules():
        module.to(accelerator.device)
    instances = instance_examples(cfg)
    classes = None
    if cfg.prior.enabled:
        with accelerator.main_process_first():  # main generates; the others then find them
            images = prior.class_images(cfg, c, model_fp, cache_root, log=log)
        classes = class_examples(cfg, images)
    bank_args = dict(
        resolution=cfg.data.resolution,
        center_crop=cfg.data.center_crop,
        flip=cfg.data.random_flip,
        seed=cfg.train.seed,
        log=log,
    )
    with accelerator.main_process_first():
        instance_bank = build_latent_bank(
            [e.image for e in instances], c.vae, model_fp, cache_root, **bank_args
        )
        class_bank = None
        if classes:
            class_bank = build_latent_bank(
                [e.image for e in classes],
                c.vae,
                model_fp,
                cache_root,
                **{**bank_args, "flip": False},
            )
    data = training_data(instances, instance_bank, classes, class_bank, c)
    held_out_sets(cfg, c, accelerator, model_fp, cache_root, data, bank_args, log)
    held_out_classes = len(data.held_out_class[1]) if data.held_out_class else 0
    log(
        f"{len(instances)} instance images, {len(classes or [])} class images "
        f"(+{held_out_classes} held out for the validation loss), "
        f"{len(data.table.prompts)} prompts"
    )
    return data


def held_out_sets(
    cfg: RunConfig,
    c: SDComponents,
    accelerator: Accelerator,
    model_fp: str,
    cache_root: Path,
    data: TrainingData,
    bank_args: dict,
    log,
) -> None:
    """The validation loss's images that are never trained on, set on `data`: eval.val_dir's
    photos of the subject (with the instance prompt) and eval.val_class_images class images
    generated by the base model (with the class prompt; prior preservation on or off)."""
    ev, d = cfg.eval, cfg.data
    if not ev.val_loss:
        return
    if ev.val_dir:
        photos = load_folder(Path(ev.val_dir).expanduser(), min_size=min_image_size(cfg))
        prompt = fill_prompt(d.prompt, d.token, d.class_name)
        data.held_out = _fixed_set(c, accelerator, model_fp, cache_root, bank_args, photos, prompt)
    if ev.val_class_images:
        with accelerator.main_process_first():  # main generates; the others then find them
            images = prior.held_out_class_images(cfg, c, model_fp, cache_root, log=log)
        data.held_out_class = _fixed_set(
            c, accelerator, model_fp, cache_root, bank_args, images, class_prompt(cfg)
        )


def _fixed_set(
    c: SDComponents,
    accelerator: Accelerator,
    model_fp: str,
    cache_root: Path,
    bank_args: dict,
    images: list[Path],
    prompt: str,
) -> tuple[LatentBank, torch.Tensor]:
    """(latents, token ids per image) of images that all have one prompt; no flips."""
    with accelerator.main_process_first():
        bank = build_latent_bank(
            images, c.vae, model_fp, cache_root, **{**bank_args, "flip": False}
        )
    ids = build_prompt_table([prompt], c).ids
    return bank, ids.expand(len(images), -1, -1)


def build_state(
    cfg: RunConfig,
    c: SDComponents,
    accelerator: Accelerator,
    data: TrainingData,
    trigger_ids: list[list[int]] | None = None,
) -> TrainState:
    """Frozen-text-encoder embeddings (once, in the training dtype), optimiser, schedule and
    EMA, then Accelerate's prepare (DDP, device, autocast). ``trigger_ids``: textual
    inversion's new tokens in each text encoder (add_trigger), the only embedding rows that
    learn. The accelerator must accumulate
    train.grad_accum micro-batches: its backward divides each micro-batch's loss by that."""
    if accelerator.gradient_accumulation_steps != cfg.train.grad_accum:
        raise ValueError(
            f"the Accelerator accumulates {accelerator.gradient_accumulation_steps} micro-batches,"
            f" train.grad_accum={cfg.train.grad_accum}: build it with "
            "gradient_accumulation_steps=cfg.train.grad_accum"
        )
    if trains_embeddings(cfg):
        return _embedding_state(cfg, c, accelerator, data, trigger_ids)
    encoders = family(c).text_encoders(c)
    if not cfg.train.text_encoder:
        cache_embeddings(
            data.table, c, accelerator.device, WEIGHT_DTYPES[accelerator.mixed_precision]
        )
    text = None  # the text-encoder parameter group: one encoder, or SDXL's two as one module
    if cfg.train.text_encoder:
        text = encoders[0] if len(encoders) == 1 else torch.nn.ModuleList(encoders)
    groups = param_groups(cfg, c.unet, text)
    optimizer = build_optimizer(cfg, groups)
    lr_schedule = build_lr_schedule(cfg, optimizer, accelerator.num_processes)
    ema = None
    if cfg.ema.enabled:  # saved by training/checkpoint.py as safetensors, not Accelerate's pickle
        ema = build_ema(cfg.ema, c.unet)
    trained_texts = encoders if cfg.train.text_encoder else ()
    unet, *prepared_texts, optimizer, lr_schedule = accelerator.prepare(
        c.unet, *trained_texts, optimizer, lr_schedule
    )
    return TrainState(
        cfg=cfg,
        accelerator=accelerator,
        components=c,
        unet=unet,
        text_encoder=prepared_texts[0] if prepared_texts else None,
        text_encoders=tuple(prepared_texts),
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        ema=ema,
        data=data,
        trained=[p for group in optimizer.param_groups for p in group["params"]],
        ema_tracked=trained_parameters(c.unet) if ema is not None else [],
    )


def _embedding_state(
    cfg: RunConfig,
    c: SDComponents,
    accelerator: Accelerator,
    data: TrainingData,
    trigger_ids: list[list[int]] | None,
) -> TrainState:
    """Textual inversion: each text encoder's token embedding matrix (at optim.lr; pivotal: at
    method.ti_lr), its other rows masked and restored (FrozenRows). Pivotal tuning adds the
    UNet's trained parameters at optim.lr, switched on by its phases; textual inversion's frozen
    UNet is not prepared (DDP wraps trained modules only). The EMA averages averaged_module's
    parameters. The encoders are prepared in the family's order (SDXL: both)."""
    encoders = family(c).text_encoders(c)
    if not trigger_ids or len(trigger_ids) != len(encoders):
        raise ValueError("textual inversion needs the new tokens' ids of each text encoder")
    frozen = tuple(FrozenRows.around(e, ids) for e, ids in zip(encoders, trigger_ids, strict=True))
    pivotal = is_pivotal(cfg)
    lr = cfg.method.ti_lr if pivotal else cfg.optim.lr
    groups = [{"params": [rows.weight for rows in frozen], "lr": lr}]
    if pivotal:
        groups += param_groups(cfg, c.unet, None)
    optimizer = build_optimizer(cfg, groups)
    lr_schedule = build_lr_schedule(cfg, optimizer, accelerator.num_processes)
    averaged = trained_parameters(averaged_module(cfg, c))  # before a phase switches any off
    ema = build_ema(cfg.ema, averaged_module(cfg, c)) if cfg.ema.enabled else None
    unet = c.unet
    if pivotal:
        unet, *texts, optimizer, lr_schedule = accelerator.prepare(
            c.unet, *encoders, optimizer, lr_schedule
        )
    else:
        *texts, optimizer, lr_schedule = accelerator.prepare(*encoders, optimizer, lr_schedule)
    return TrainState(
        cfg=cfg,
        accelerator=accelerator,
        components=c,
        unet=unet,
        text_encoder=texts[0],
        text_encoders=tuple(texts),
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        ema=ema,
        data=data,
        trained=[p for group in optimizer.param_groups for p in group["params"]],
        ema_tracked=averaged if ema is not None else [],
        frozen_rows=frozen,
        phases=(
            Phases(cfg, [rows.weight for rows in frozen], trained_parameters(c.unet))
            if pivotal
            else None
        ),
    )


def unwrapped(state: TrainState) -> SDComponents:
    """The trained modules without DDP/autocast wrappers, in fp32, for sampling or export."""
    a, c = state.accelerator, state.components
    names = family(c).text_encoder_names
    texts = {name: a.unwrap_model(m) for name, m in zip(names, state.text_encoders, strict=False)}
    return replace(c, unet=a.unwrap_model(state.unet), **texts)
