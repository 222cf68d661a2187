"""Typed settings of a DreamSweep run, and the checks that run before anything is loaded.

The YAML in `conf/` holds every default; these dataclasses only type the keys (every field is
MISSING, so there is no second set of values to drift apart). Hydra composes `conf/`;
`load_config` merges it onto the schema (OmegaConf rejects unknown keys, wrong types and keys
left without a value), `config_checks.validate` checks what a schema cannot express (ranges,
combinations, what this machine can do), and the result is frozen. Every error names the key.
Importing this module and validating import neither torch nor diffusers: a config error
answers at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

from dreamsweep import ASSETS_DIR
from dreamsweep.config_checks import ConfigError, validate  # ConfigError: also raised here


def asset_path(name: str) -> str:
    """`${asset:toyworld/base}` in conf/: a folder shipped inside the package, wherever it is
    installed (conf/model/toyworld.yaml, conf/data/toyworld.yaml)."""
    return str(ASSETS_DIR / name)


def seed_range(n: int) -> list[int]:
    """`${range:64}` in conf/: the seeds 0..63 (eval.seeds with many samples per prompt)."""
    return list(range(int(n)))


OmegaConf.register_new_resolver("asset", asset_path, replace=True)
OmegaConf.register_new_resolver("range", seed_range, replace=True)


@dataclass(frozen=True)
class ModelConfig:
    name: str = MISSING  # tiny | sd15 | sd21 | any label for a local/hub model
    path: str | None = MISSING  # local folder, single .safetensors/.ckpt file, or hub id
    revision: str | None = MISSING
    variant: str | None = MISSING  # e.g. fp16 weights on the hub
    # a VAE folder or hub id replacing the model's own; with one, the VAE follows the mixed
    # precision (SDXL's own VAE stays fp32: it overflows in fp16)
    vae_path: str | None = MISSING
    seed: int = MISSING  # tiny only: the random init of the embedded model
    sample_size: int = MISSING  # tiny only: native image size
    lr: float = MISSING  # this model's default LR for a full fine-tune (optim.lr wins)
    lora_lr: float = MISSING  # ... and for LoRA adapters (method=lora)


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
    name: str = MISSING  # dreambooth (full) | lora (peft adapters) | textual_inversion | pivotal
    type: str | None = MISSING  # lora: lora | loha | lokr (peft's LoRA-family adapters)
    rank: int | None = MISSING  # lora: the adapters' rank
    alpha: float | None = MISSING  # lora: scale alpha / rank (kept as is in exports)
    dropout: float | None = MISSING  # lora: dropout on the adapter's input
    targets: list[str] = MISSING  # lora: attention | feed_forward | conv (UNet resnets)
    num_vectors: int | None = MISSING  # textual_inversion/pivotal: embedding vectors per trigger
    init_word: str | None = MISSING  # ... the new vectors start as this word's (data.class_name)
    ti_steps: int | None = MISSING  # pivotal: steps of textual inversion before phase 2
    ti_lr: float | None = MISSING  # pivotal: the embeddings' LR (phase 2 learns at optim.lr)
    then: str | None = MISSING  # pivotal: dreambooth | lora, the second phase
    train_embeddings: bool | None = MISSING  # pivotal: the embeddings also learn in phase 2


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
    adaptive: bool = MISSING  # sample seeds in blocks, more only where a verdict needs them
    adaptive_block: int = MISSING  # seeds per prompt in each block
    batch_size: int = MISSING
    resolution: int | None = MISSING  # default: data.resolution
    val_loss: bool = MISSING  # the denoising loss at fixed timesteps and noise (val_loss.py)
    val_buckets: int = MISSING  # fixed timesteps: the middles of this many slices
    val_every: int | None = MISSING  # also every N steps (cheap: no sampling); null: eval steps
    val_dir: str | None = MISSING  # held-out photos of the subject (never trained on)
    val_class_images: int = MISSING  # held-out class images (never trained on), prior on or off


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
    # CPU threads per process; null: chosen at the first start (a share of the free cores) and
    # written here in the run's config.yaml, so that a resume uses the same count
    threads: int | None = MISSING


@dataclass(frozen=True)
class TrialLink:
    """Set by the Optuna sweeper for each job: which trial this run is, and how to prune it."""

    storage: str | None = MISSING
    study_name: str | None = MISSING
    trial_number: int | None = MISSING  # trial.number in the study
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


def load_config(raw: DictConfig | dict[str, Any], *, check_machine: bool = True) -> RunConfig:
    """Merge composed config onto the schema, validate, freeze; ConfigError names the key."""
    try:
        merged = OmegaConf.merge(_writable_schema(), _one_value_axes(raw))
        cfg: RunConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as err:
        raise ConfigError(_explain_omegaconf_error(err)) from None
    validate(cfg, check_machine=check_machine)
    return cfg


def load_saved_config(
    saved: DictConfig | dict[str, Any], defaults: DictConfig | dict[str, Any] | None = None
) -> RunConfig:
    """A run's config.yaml as typed settings, for what reads a run after it ran (export, the
    W&B report, rescoring): checked, but not against this machine. A key that the version which
    wrote the run did not have yet takes its value from ``defaults`` (conf/ composed now), so
    older run folders still load."""
    merged = OmegaConf.merge(defaults, saved) if defaults is not None else saved
    return load_config(merged, check_machine=False)


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


# Settings that name places on this machine: published as names, never as paths.
MACHINE_PATHS = ("model.path", "data.instance_dir", "prior.class_dir", "eval.val_dir")
ASSET_PREFIX = "asset:"  # a folder shipped in the package, as conf/ names it (${asset:...})


ADDED_GROUPS = ("sweep", "debug")  # config groups outside the defaults list: added with +


def added_group_hint(arguments: list[str]) -> str | None:
    """One line for `sweep=demo` given without its `+` (Hydra's answer is three lines and a
    traceback hint); None when every argument is fine."""
    for argument in arguments:
        group, equals, option = argument.partition("=")
        if equals and group in ADDED_GROUPS:
            run = "python train.py -m" if group == "sweep" else "python train.py"
            return (
                f"{argument}: the {group} group is added to a run, not overridden: use "
                f"+{group}={option} (e.g. {run} +{group}={option})"
            )
    return None


def portable_location(value: str) -> str:
    """How a model or folder is named outside this machine: a shipped asset as
    `asset:toyworld/base`, a local path by its last part (as kohya's `ss_sd_model_name`), a hub
    id (`org/name`, not a path here) as it is."""
    path = Path(value).expanduser()
    if path.is_relative_to(ASSETS_DIR) or path.resolve().is_relative_to(ASSETS_DIR):
        return ASSET_PREFIX + path.resolve().relative_to(ASSETS_DIR).as_posix()
    local = path.is_absolute() or value.startswith(("~", ".")) or path.exists()
    return path.resolve().name if local else value


def local_location(value: str) -> str:
    """The inverse for what this package ships: `asset:toyworld/base` -> its folder here."""
    return asset_path(value[len(ASSET_PREFIX) :]) if value.startswith(ASSET_PREFIX) else value


def portable_settings(cfg: RunConfig) -> dict[str, Any]:
    """The settings published in weights' metadata and model cards: `public_settings` without
    this machine's paths (no `cache_dir`; models and folders named by `portable_location`)."""
    settings = public_settings(cfg)
    settings.pop("cache_dir", None)
    for dotted in MACHINE_PATHS:
        section, key = dotted.split(".")
        value = settings.get(section, {}).get(key)
        if isinstance(value, str) and value:
            settings[section][key] = portable_location(value)
    return settings


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
