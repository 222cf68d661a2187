"""Typed settings of a DreamSweep run, and the checks that run before anything is loaded.

The YAML in `conf/` holds every default; these dataclasses only type the keys (every field is
MISSING, so there is no second set of values to drift apart). Hydra composes `conf/`;
`load_config` merges it onto the schema (OmegaConf rejects unknown keys, wrong types and keys
left without a value), `validate` checks what a schema cannot express (ranges, combinations,
what this machine can do), and the result is frozen. Every error names the key. Importing
this module and validating import neither torch nor diffusers: a config error answers at once.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException


class ConfigError(ValueError):
    """A setting that cannot work; the message names the key and what is allowed."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = MISSING  # tiny | sd15 | sd21 | any label for a local/hub model
    path: str | None = MISSING  # local folder, single .safetensors/.ckpt file, or hub id
    revision: str | None = MISSING
    variant: str | None = MISSING  # e.g. fp16 weights on the hub
    seed: int = MISSING  # tiny only: the random init of the embedded model
    sample_size: int = MISSING  # tiny only: native image size


@dataclass(frozen=True)
class DataConfig:
    name: str = MISSING  # toy (bundled subject) | folder
    instance_dir: str | None = MISSING
    token: str = MISSING
    class_name: str = MISSING
    prompt: str = MISSING
    captions: bool = MISSING  # use <image>.txt sidecars when present
    resolution: int = MISSING
    center_crop: bool = MISSING
    random_flip: bool = MISSING
    min_image_size: int | None = MISSING  # default: half the resolution
    skip_bad: bool = MISSING


@dataclass(frozen=True)
class MethodConfig:
    name: str = MISSING  # dreambooth (full fine-tune) | lora (peft adapters, base frozen)
    type: str | None = MISSING  # lora: lora | loha | lokr (peft's LoRA-family adapters)
    rank: int | None = MISSING  # lora: the adapters' rank
    alpha: float | None = MISSING  # lora: scale alpha / rank (kept as is in exports)
    dropout: float | None = MISSING  # lora: dropout on the adapter's input
    targets: list[str] = MISSING  # lora: attention | feed_forward | conv (UNet resnets)


@dataclass(frozen=True)
class PriorConfig:
    enabled: bool = MISSING
    weight: float = MISSING
    num_images: int = MISSING
    class_dir: str | None = MISSING
    class_prompt: str = MISSING
    sample_steps: int = MISSING
    guidance_scale: float = MISSING
    seed: int = MISSING
    batch_size: int = MISSING


@dataclass(frozen=True)
class OptimConfig:
    name: str = MISSING  # adamw | adamw8bit
    lr: float = MISSING
    lr_scheduler: str = MISSING
    warmup_steps: int = MISSING
    beta1: float = MISSING
    beta2: float = MISSING
    weight_decay: float = MISSING
    eps: float = MISSING
    max_grad_norm: float = MISSING


@dataclass(frozen=True)
class EmaConfig:
    enabled: bool = MISSING
    decay: float = MISSING
    min_decay: float = MISSING
    update_after_step: int = MISSING
    warmup: bool = MISSING
    inv_gamma: float = MISSING
    power: float = MISSING


@dataclass(frozen=True)
class TrainLoopConfig:
    max_steps: int = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING
    seed: int = MISSING
    text_encoder: bool = MISSING
    text_encoder_lr: float | None = MISSING  # default: optim.lr
    gradient_checkpointing: bool = MISSING
    attention: str = MISSING  # sdpa | eager | xformers
    noise: str = MISSING  # gaussian | offset | multires (kohya's "pyramid" noise)
    noise_offset: float = MISSING  # noise=offset: per-channel shift strength
    multires_iterations: int = MISSING  # noise=multires: coarser scales added
    multires_discount: float = MISSING  # noise=multires: weight of scale i is discount**i
    snr_gamma: float | None = MISSING  # min-SNR-gamma weighting; 5.0 is the paper's choice
    checkpoint_every: int = MISSING
    keep_checkpoints: int = MISSING
    log_every: int = MISSING


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation axes: each cell is (step, scheduler, inference steps, guidance, weights)."""

    enabled: bool = MISSING
    at_steps: list[int] = MISSING  # step 0 and the final step always added
    every_n_steps: int | None = MISSING
    schedulers: list[str] = MISSING
    num_inference_steps: list[int] = MISSING
    guidance_scale: list[float] = MISSING
    weights: list[str] = MISSING
    negative_prompt: str = MISSING
    prompts: str = MISSING  # auto | objects | live (DreamBench templates)
    prompt_list: list[str] = MISSING  # your own templates instead
    num_prompts: int = MISSING
    seeds: list[int] = MISSING
    batch_size: int = MISSING
    resolution: int | None = MISSING  # default: data.resolution
    val_loss: bool = MISSING  # the denoising loss at fixed timesteps and noise (val_loss.py)
    val_buckets: int = MISSING  # fixed timesteps: the middles of this many slices
    val_every: int | None = MISSING  # also every N steps (cheap: no sampling); null: eval steps
    val_dir: str | None = MISSING  # held-out photos of the subject (never trained on)


@dataclass(frozen=True)
class FeatureModelConfig:
    # auto: a tiny random model for model=tiny, else the paper's model (CLIP ViT-L/14,
    # DINO ViT-S/16) from the Hugging Face cache; or a local folder / hub id / tiny.
    model: str = MISSING


@dataclass(frozen=True)
class MetricsConfig:
    scorers: list[str] = MISSING
    clip: FeatureModelConfig = field(default_factory=FeatureModelConfig)
    dino: FeatureModelConfig = field(default_factory=FeatureModelConfig)
    objective: str = MISSING  # balanced | subject | prompt | identity
    drift_penalty: float = MISSING


@dataclass(frozen=True)
class TrackerConfig:
    name: str = MISSING  # wandb | disk
    project: str = MISSING
    entity: str | None = MISSING
    mode: str = MISSING  # offline | online | disabled; WANDB_MODE wins
    tags: list[str] = MISSING


@dataclass(frozen=True)
class LauncherConfig:
    name: str = MISSING  # local | multigpu
    num_processes: int = MISSING
    mixed_precision: str = MISSING  # no | fp16 | bf16
    gpu_ids: str | None = MISSING  # "0,1" or "all"; None: CPU when no CUDA, else all GPUs
    main_process_port: int | None = MISSING


@dataclass(frozen=True)
class TrialLink:
    """Set by the Optuna sweeper for each job: which trial this run is, and how to prune it."""

    storage: str | None = MISSING
    study_name: str | None = MISSING
    trial_id: int | None = MISSING  # the storage's id (not trial.number)
    pruner: str = MISSING
    pruner_kwargs: dict[str, Any] = MISSING


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EmaConfig = field(default_factory=EmaConfig)
    train: TrainLoopConfig = field(default_factory=TrainLoopConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    optuna: TrialLink = field(default_factory=TrialLink)
    run_name: str | None = MISSING
    sweep_name: str | None = MISSING
    cache_dir: str = MISSING


METHODS = ("dreambooth", "lora")
LORA_TARGETS = ("attention", "feed_forward", "conv")
LORA_TYPES = ("lora", "loha", "lokr")
NOISES = ("gaussian", "offset", "multires")
OPTIMIZERS = ("adamw", "adamw8bit")
LR_SCHEDULERS = (
    "constant",
    "constant_with_warmup",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
)
ATTENTION = ("sdpa", "eager", "xformers")
MIXED_PRECISION = ("no", "fp16", "bf16")
TRACKERS = ("wandb", "disk")
WANDB_MODES = ("offline", "online", "disabled")


def load_config(raw: DictConfig | dict[str, Any], *, check_machine: bool = True) -> RunConfig:
    """Merge composed config onto the schema, validate, freeze; ConfigError names the key."""
    try:
        merged = OmegaConf.merge(_writable_schema(), _one_value_axes(raw))
        cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise ConfigError(_explain_omegaconf_error(err)) from None
    validate(cfg, check_machine=check_machine)
    return cfg


def _writable_schema() -> DictConfig:
    """The schema as a config that composed values can be merged onto (frozen dataclasses make
    read-only nodes; the instances built from it are frozen again by to_object)."""

    def unlock(node: DictConfig) -> None:
        OmegaConf.set_readonly(node, None)
        for key in node:
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                unlock(child)

    schema = OmegaConf.structured(RunConfig)
    unlock(schema)
    return schema


EVAL_LISTS = ("at_steps", "schedulers", "num_inference_steps", "guidance_scale", "weights", "seeds")


def _one_value_axes(raw: DictConfig | dict[str, Any]) -> DictConfig | dict[str, Any]:
    """`eval.num_inference_steps=100` means [100]: an evaluation axis with one value."""
    ev = raw.get("eval") if isinstance(raw, dict | DictConfig) else None
    if not isinstance(ev, dict | DictConfig):
        return raw
    scalars = {
        k: [ev[k]]
        for k in EVAL_LISTS
        if k in ev
        and ev[k] is not None
        and not isinstance(ev[k], list | tuple)
        and not OmegaConf.is_list(ev[k])
    }
    return OmegaConf.merge(raw, {"eval": scalars}) if scalars else raw


def public_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings that may leave the run folder (weights' metadata, W&B): all but the Optuna
    trial link, which names the study's storage."""
    return {k: v for k, v in to_dict(cfg).items() if k != "optuna"}


def to_dict(cfg: RunConfig) -> dict[str, Any]:
    """A plain, resolved dict (for config.yaml, W&B and safetensors metadata)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def save_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


REQUIRED = {  # what a key that conf/ leaves as ??? is for, said when it is missing
    "model.path": "this model needs model.path: a local folder, a .safetensors/.ckpt file or a "
    "hub id",
    "data.instance_dir": "data=folder needs data.instance_dir: the folder of your subject's photos",
    "data.class_name": "data=folder needs data.class_name: what your subject is (dog, person)",
}


def _explain_omegaconf_error(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or "?"
    msg = str(err).splitlines()[0]
    if isinstance(err, MissingMandatoryValue):
        return f"{key}: {REQUIRED.get(key, 'has no value')} (set it: {key}=...)"
    if "not in" in msg or "Key '" in msg and "not" in msg:
        section = key.rsplit(".", 1)[0] if "." in key else ""
        known = _known_keys(section)
        return (
            f"unknown config key '{key}'. Known keys{f' of {section}' if section else ''}: {known}"
        )
    return f"bad value for config key '{key}': {msg}"


def _known_keys(section: str) -> str:
    node: Any = RunConfig()
    for part in filter(None, section.split(".")):
        node = getattr(node, part, None)
        if node is None:
            return "(see conf/)"
    return ", ".join(sorted(vars(node)))


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def validate(cfg: RunConfig, *, check_machine: bool = True) -> None:
    """Check ranges and combinations; with check_machine, also what this machine can run."""
    _validate_model_and_data(cfg)
    _validate_training(cfg)
    _validate_eval_and_tracking(cfg)
    if check_machine:
        validate_machine(cfg)


def _validate_model_and_data(cfg: RunConfig) -> None:
    m, d, p = cfg.model, cfg.data, cfg.prior
    _require(
        m.name == "tiny" or bool(m.path),
        "model.path",
        f"model={m.name} needs model.path: a local folder, a .safetensors/.ckpt file or a hub id",
    )
    _require(m.sample_size % 8 == 0, "model.sample_size", "must be a multiple of 8")
    _require(d.name in ("toy", "folder"), "data", f"'{d.name}' is not one of: toy, folder")
    _require(
        d.name == "toy" or bool(d.instance_dir),
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
    _require(cfg.method.name in METHODS, "method", f"'{cfg.method.name}' is not one of: {METHODS}")
    if cfg.method.name == "lora":
        me = cfg.method
        _require(
            me.type in LORA_TYPES,
            "method.type",
            f"'{me.type}' is not one of: {', '.join(LORA_TYPES)}",
        )
        _require(bool(me.rank) and me.rank > 0, "method.rank", "must be a positive integer")
        _require(bool(me.alpha) and me.alpha > 0, "method.alpha", "must be > 0")
        _require(0 <= (me.dropout or 0) < 1, "method.dropout", "must be in [0, 1)")
        bad = [t for t in me.targets if t not in LORA_TARGETS]
        _require(
            bool(me.targets) and not bad,
            "method.targets",
            f"unknown {bad or 'none given'}; known: {', '.join(LORA_TARGETS)}",
        )
    if p.enabled:
        _require(
            bool(d.class_name.strip()),
            "data.class_name",
            "prior preservation (prior=on) needs a class name, e.g. data.class_name=dog",
        )
        _require(p.weight > 0, "prior.weight", f"must be > 0, got {p.weight}")
        _require(p.num_images > 0, "prior.num_images", f"must be > 0, got {p.num_images}")
        _require(p.sample_steps > 0, "prior.sample_steps", "must be > 0")
        _require(p.batch_size > 0, "prior.batch_size", "must be > 0")


def _validate_training(cfg: RunConfig) -> None:
    o, t, e = cfg.optim, cfg.train, cfg.ema
    _require(o.name in OPTIMIZERS, "optim.name", f"'{o.name}' is not one of: {OPTIMIZERS}")
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
    _require(
        t.attention in ATTENTION, "train.attention", f"'{t.attention}' is not one of: {ATTENTION}"
    )
    _require(t.noise in NOISES, "train.noise", f"'{t.noise}' is not one of: {', '.join(NOISES)}")
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
    _require(t.keep_checkpoints > 0, "train.keep_checkpoints", "must be > 0")
    _require(0 < e.decay < 1, "ema.decay", f"must be in (0, 1), got {e.decay}")


SCORERS = ("clip_i", "clip_t", "dino", "diversity", "prior_drift", "memorization", "identity")


def _validate_eval_and_tracking(cfg: RunConfig) -> None:
    from dreamsweep.metrics.objective import OBJECTIVES
    from dreamsweep.prompts import SUITES
    from dreamsweep.schedulers import SCHEDULERS

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
    _require(ev.val_every is None or ev.val_every > 0, "eval.val_every", "must be > 0 or null")
    _require(
        ev.val_dir is None or Path(ev.val_dir).expanduser().is_dir(),
        "eval.val_dir",
        f"{ev.val_dir} is not a folder: give a folder of held-out photos of the subject or null",
    )
    _require(tr.name in TRACKERS, "tracker", f"'{tr.name}' is not one of: {TRACKERS}")
    _require(tr.mode in WANDB_MODES, "tracker.mode", f"'{tr.mode}' is not one of: {WANDB_MODES}")
    _require(la.num_processes > 0, "launcher.num_processes", "must be > 0")
    _require(
        la.mixed_precision in MIXED_PRECISION,
        "launcher.mixed_precision",
        f"'{la.mixed_precision}' is not one of: {MIXED_PRECISION}",
    )


def validate_machine(cfg: RunConfig) -> None:
    """Options that need CUDA or an optional package fail here, before any model is loaded
    (torch is imported only when such an option is asked for)."""
    cuda_only = {
        "optim.name=adamw8bit": cfg.optim.name == "adamw8bit",
        "train.attention=xformers": cfg.train.attention == "xformers",
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
    if cfg.optim.name == "adamw8bit":
        _require(
            importlib.util.find_spec("bitsandbytes") is not None,
            "optim.name",
            "adamw8bit needs bitsandbytes: pip install 'dreamsweep[gpu]'",
        )
    if cfg.train.attention == "xformers":
        _require(
            importlib.util.find_spec("xformers") is not None,
            "train.attention",
            "xformers is not installed: pip install 'dreamsweep[gpu]', or use sdpa",
        )
