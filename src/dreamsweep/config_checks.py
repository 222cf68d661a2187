"""The checks of a run's settings that a schema cannot express: ranges, combinations, names of
the named choices, and what this machine can do (CUDA-only options). Each failure is a
ConfigError naming the key and what to do. Imports neither torch nor diffusers (torch only
when a CUDA-only option is asked for).

A named choice (noise, optimizer, attention, method, data, tracker, scorer, scheduler) is
checked against the one table the code builds it from (dreamsweep/choices.py,
metrics/registry.py, evaluation/schedulers.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamsweep.choices import (
    ATTENTION,
    DATA,
    LORA_TARGETS,
    LORA_TYPES,
    METHODS,
    NOISES,
    OPTIMIZERS,
    TRACKERS,
)
from dreamsweep.registry import unknown_message

if TYPE_CHECKING:
    from dreamsweep.config import RunConfig


class ConfigError(ValueError):
    """A setting that cannot work; the message names the key and what is allowed."""


PIVOTAL_THEN = ("dreambooth", "lora")
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)
MIXED_PRECISION = ("no", "fp16", "bf16")
WANDB_MODES = ("offline", "online", "disabled")
# Seeds of generated class images (prior.py): the prior's image i is sampled from prior.seed + i,
# the validation loss's held-out image i from prior.seed + HELD_OUT_SEEDS + i, so the two sets
# share no seed while prior.num_images stays below it.
HELD_OUT_SEEDS = 1_000_000


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _choice(name: str, table: Mapping[str, Any], key: str) -> None:
    """A named choice must be a name of its table; the error lists every known name."""
    _require(name in table, key, unknown_message(name, table))


def validate(cfg: RunConfig, *, check_machine: bool = True) -> None:
    """Check ranges and combinations; with check_machine, also what this machine can run."""
    _validate_model_and_data(cfg)
    _validate_training(cfg)
    _validate_eval_and_tracking(cfg)
    if check_machine:
        validate_machine(cfg)


# Models built in code (models/loading.py BUILT_IN): they need no model.path.
BUILT_IN_MODELS = ("tiny", "tiny_xl")


def _validate_model_and_data(cfg: RunConfig) -> None:
    m, d, p = cfg.model, cfg.data, cfg.prior
    _require(
        m.name in BUILT_IN_MODELS or bool(m.path),
        "model.path",
        f"model={m.name} needs model.path: a local folder, a .safetensors/.ckpt file or a hub id",
    )
    _require(m.sample_size % 8 == 0, "model.sample_size", "must be a multiple of 8")
    _choice(d.name, DATA, "data")
    _require(
        DATA[d.name] is not None or bool(d.instance_dir),
        "data.instance_dir",
        "data=folder needs data.instance_dir: the folder of your subject's photos",
    )
    _require(
        d.resolution > 0 and d.resolution % 8 == 0,
        "data.resolution",
        f"{d.resolution} is not a positive multiple of 8 (try 512 or 768)",
    )
    _require(bool(d.token.strip()), "data.token", "must not be empty (e.g. sks)")
    _require("{token}" in d.prompt, "data.prompt", "must contain {token}")
    _choice(cfg.method.name, METHODS, "method")
    if cfg.method.name == "lora" or (cfg.method.name == "pivotal" and cfg.method.then == "lora"):
        me = cfg.method
        _choice(me.type, LORA_TYPES, "method.type")
        _require(bool(me.rank) and me.rank > 0, "method.rank", "must be a positive integer")
        _require(bool(me.alpha) and me.alpha > 0, "method.alpha", "must be > 0")
        _require(0 <= (me.dropout or 0) < 1, "method.dropout", "must be in [0, 1)")
        bad = [t for t in me.targets if t not in LORA_TARGETS]
        _require(
            bool(me.targets) and not bad,
            "method.targets",
            f"unknown {bad or 'none given'}; known: {', '.join(LORA_TARGETS)}",
        )
    if cfg.method.name in ("textual_inversion", "pivotal"):
        _validate_embeddings(cfg)
    if cfg.method.name == "pivotal":
        _validate_pivotal(cfg)
    if p.enabled:
        _require(
            bool(d.class_name.strip()),
            "data.class_name",
            "prior preservation (prior=on) needs a class name, e.g. data.class_name=dog",
        )
        _require(p.weight > 0, "prior.weight", f"must be > 0, got {p.weight}")
        _require(
            0 < p.num_images < HELD_OUT_SEEDS,
            "prior.num_images",
            f"must be > 0 and < {HELD_OUT_SEEDS:,}, got {p.num_images}",
        )
    held_out = cfg.eval.val_loss and cfg.eval.val_class_images > 0
    if held_out:
        _require(
            bool(d.class_name.strip()),
            "data.class_name",
            "the validation loss's held-out class images need a class name, e.g. "
            "data.class_name=dog (or eval.val_class_images=0)",
        )
    if p.enabled or held_out:  # class images are generated with these
        _require(p.sample_steps > 0, "prior.sample_steps", "must be > 0")
        _require(p.batch_size > 0, "prior.batch_size", "must be > 0")


def _validate_embeddings(cfg: RunConfig) -> None:
    """Textual inversion: new tokens, initialised from a word, and nothing else trained."""
    me = cfg.method
    _require(
        me.num_vectors is not None and me.num_vectors > 0,
        "method.num_vectors",
        f"must be a positive integer (embedding vectors of the trigger), got {me.num_vectors}",
    )
    _require(
        bool((me.init_word or cfg.data.class_name).strip()),
        "method.init_word",
        "the new tokens start as a word's embedding: set method.init_word or data.class_name",
    )
    _require(
        not cfg.train.text_encoder,
        "train.text_encoder",
        f"method={me.name} trains only the trigger's embeddings; set train.text_encoder=false",
    )


def _validate_pivotal(cfg: RunConfig) -> None:
    """Pivotal tuning: a first phase shorter than the run, then a known second method."""
    me, steps = cfg.method, cfg.train.max_steps
    _require(
        me.then in PIVOTAL_THEN,
        "method.then",
        f"'{me.then}' is not one of: {', '.join(PIVOTAL_THEN)}",
    )
    _require(
        me.ti_steps is not None and 0 < me.ti_steps < steps,
        "method.ti_steps",
        f"must be > 0 and < train.max_steps={steps} (phase 2 trains the rest), got {me.ti_steps}",
    )
    _require(
        me.ti_lr is not None and me.ti_lr > 0,
        "method.ti_lr",
        f"must be > 0 (the embeddings' LR), got {me.ti_lr}",
    )


def _validate_training(cfg: RunConfig) -> None:
    o, t, e = cfg.optim, cfg.train, cfg.ema
    _choice(o.name, OPTIMIZERS, "optim.name")
    _require(o.lr > 0, "optim.lr", f"must be > 0, got {o.lr}")
    _require(
        o.lr_scheduler in LR_SCHEDULERS,
        "optim.lr_scheduler",
        f"'{o.lr_scheduler}' is not one of: {LR_SCHEDULERS}",
    )
    _require(o.warmup_steps >= 0, "optim.warmup_steps", "must be >= 0")
    _require(0 <= o.beta1 < 1 and 0 <= o.beta2 < 1, "optim.beta1/beta2", "must be in [0, 1)")
    _require(o.max_grad_norm > 0, "optim.max_grad_norm", "must be > 0")
    _require(t.max_steps > 0, "train.max_steps", f"must be > 0, got {t.max_steps}")
    _require(t.batch_size > 0, "train.batch_size", "must be > 0")
    _require(t.grad_accum > 0, "train.grad_accum", "must be > 0")
    _require(
        t.text_encoder_lr is None or t.text_encoder_lr > 0,
        "train.text_encoder_lr",
        f"must be > 0, got {t.text_encoder_lr}",
    )
    _choice(t.attention, ATTENTION, "train.attention")
    _choice(t.noise, NOISES, "train.noise")
    _require(t.noise_offset >= 0, "train.noise_offset", "must be >= 0")
    _require(
        t.noise != "offset" or t.noise_offset > 0,
        "train.noise_offset",
        "train.noise=offset needs train.noise_offset > 0 (e.g. 0.1)",
    )
    _require(t.multires_iterations > 0, "train.multires_iterations", "must be > 0")
    _require(0 < t.multires_discount < 1, "train.multires_discount", "must be in (0, 1)")
    _require(t.snr_gamma is None or t.snr_gamma > 0, "train.snr_gamma", "must be > 0 or null")
    _require(t.checkpoint_every > 0, "train.checkpoint_every", "must be > 0")
    _require(t.log_every > 0, "train.log_every", "must be > 0 (1 logs every step)")
    _require(t.keep_checkpoints > 0, "train.keep_checkpoints", "must be > 0")
    _require(0 < e.decay < 1, "ema.decay", f"must be in (0, 1), got {e.decay}")


def _validate_eval_and_tracking(cfg: RunConfig) -> None:
    from dreamsweep.evaluation.prompts import SUITES
    from dreamsweep.evaluation.schedulers import SCHEDULERS
    from dreamsweep.metrics.objective import OBJECTIVES
    from dreamsweep.metrics.registry import SCORERS

    ev, tr, la, me = cfg.eval, cfg.tracker, cfg.launcher, cfg.metrics
    unknown = [s for s in ev.schedulers if s not in SCHEDULERS]
    _require(
        not unknown, "eval.schedulers", f"unknown {unknown}; known: {', '.join(sorted(SCHEDULERS))}"
    )
    _require(
        ev.prompts == "auto" or ev.prompts in SUITES,
        "eval.prompts",
        f"'{ev.prompts}' is not one of: auto, {', '.join(SUITES)} (or set eval.prompt_list)",
    )
    _require(
        ev.num_prompts > 0 and len(ev.seeds) > 0,
        "eval.num_prompts/eval.seeds",
        "need at least one prompt and one seed",
    )
    _require(ev.every_n_steps is None or ev.every_n_steps > 0, "eval.every_n_steps", "must be > 0")
    _require(ev.adaptive_block > 0, "eval.adaptive_block", "must be > 0 (seeds per block)")
    _require(
        bool(ev.schedulers) and bool(ev.guidance_scale),
        "eval.schedulers/guidance_scale",
        "must not be empty",
    )
    _require(
        ev.resolution is None or ev.resolution % 8 == 0,
        "eval.resolution",
        "must be a multiple of 8",
    )
    for key, source in (
        ("metrics.clip.model", me.clip.model),
        ("metrics.dino.model", me.dino.model),
    ):
        looks_local = source.startswith(("/", "./", "../", "~"))
        _require(
            not looks_local or Path(source).expanduser().exists(),
            key,
            f"{source} does not exist: give a local model folder, a hub id, tiny or auto",
        )
    bad = [s for s in me.scorers if s not in SCORERS]
    _require(not bad, "metrics.scorers", f"unknown {bad}; known: {', '.join(SCORERS)}")
    _require(
        me.objective in OBJECTIVES,
        "metrics.objective",
        f"'{me.objective}' is not one of: {', '.join(OBJECTIVES)}",
    )
    _require(
        me.objective != "identity" or "identity" in me.scorers,
        "metrics.objective",
        "objective=identity needs the identity scorer (metrics=faces)",
    )
    _require(all(s >= 0 for s in ev.at_steps), "eval.at_steps", "steps must be >= 0")
    _require(all(n > 0 for n in ev.num_inference_steps), "eval.num_inference_steps", "must be > 0")
    _require(set(ev.weights) <= {"ema", "raw"}, "eval.weights", "allowed values: ema, raw")
    _require(ev.val_buckets > 0, "eval.val_buckets", "must be > 0")
    _require(
        ev.val_class_images >= 0,
        "eval.val_class_images",
        f"must be >= 0 (0: no held-out class images), got {ev.val_class_images}",
    )
    _require(ev.val_every is None or ev.val_every > 0, "eval.val_every", "must be > 0 or null")
    _require(
        ev.val_dir is None or Path(ev.val_dir).expanduser().is_dir(),
        "eval.val_dir",
        f"{ev.val_dir} is not a folder: give a folder of held-out photos of the subject or null",
    )
    _choice(tr.name, TRACKERS, "tracker")
    _require(tr.mode in WANDB_MODES, "tracker.mode", f"'{tr.mode}' is not one of: {WANDB_MODES}")
    _require(la.num_processes > 0, "launcher.num_processes", "must be > 0")
    _require(la.threads is None or la.threads > 0, "launcher.threads", "must be > 0 or null")
    _require(
        la.mixed_precision in MIXED_PRECISION,
        "launcher.mixed_precision",
        f"'{la.mixed_precision}' is not one of: {MIXED_PRECISION}",
    )


def validate_machine(cfg: RunConfig) -> None:
    """Options that need CUDA or an optional package fail here, before any model is loaded
    (torch is imported only when such an option is asked for). Which optimizers and attention
    backends need CUDA and a package is said by their table (choices.py)."""
    backends = {
        "optim.name": (cfg.optim.name, OPTIMIZERS.get(cfg.optim.name)),
        "train.attention": (cfg.train.attention, ATTENTION.get(cfg.train.attention)),
    }
    needs = {f"{key}={name}": (key, b.cuda_package) for key, (name, b) in backends.items()
             if b is not None and b.cuda_package}  # fmt: skip
    cuda_only = {
        **{option: True for option in needs},
        "launcher.mixed_precision=fp16": cfg.launcher.mixed_precision == "fp16",
        f"launcher.gpu_ids={cfg.launcher.gpu_ids}": cfg.launcher.gpu_ids is not None,
    }
    if not any(cuda_only.values()):
        return
    import torch

    has_cuda = torch.cuda.is_available()
    for option, asked in cuda_only.items():
        _require(
            not asked or has_cuda,
            option.split("=")[0],
            f"{option} needs a CUDA GPU and none is visible; remove it to train on CPU"
            " (bf16 mixed precision works on CPU)",
        )
    for option, (key, package) in needs.items():
        _require(
            importlib.util.find_spec(package) is not None,
            key,
            f"{option} needs {package}, which is not installed: pip install 'dreamsweep[gpu]'",
        )
