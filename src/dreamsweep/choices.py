"""A run's named choices and what builds each: noise, optimizer, attention backend, method,
LoRA targets and types, tracker and data source. Each is one table (name -> "module:function"
or a record naming it) that config_checks.py checks the config against and the code builds
from; adding a choice is one function where it acts plus one entry here. (Scorers:
metrics/registry.py; export formats: export/formats.py; samplers: evaluation/schedulers.py.)
Imports nothing, so checking a name needs no torch (dreamsweep/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# train.noise: (latents, train config, generator) -> the noise of a training step
NOISES = {
    "gaussian": "dreamsweep.training.loss:gaussian_noise",
    "offset": "dreamsweep.training.loss:offset_step_noise",
    "multires": "dreamsweep.training.loss:multires_step_noise",
}


@dataclass(frozen=True)
class Backend:
    """An optimizer or attention backend: what builds it and what it needs beyond torch.
    `cuda_package`: the package (extra `dreamsweep[gpu]`) of a CUDA-only choice, which
    config_checks.validate_machine requires before anything loads."""

    build: str  # "module:function"
    cuda_package: str | None = None
    kohya_class: str | None = None  # optimizers: what kohya's ss_optimizer names (module.Class)


# optim.name: (optim config, parameter groups, AdamW keyword arguments) -> the optimizer
OPTIMIZERS = {
    "adamw": Backend(
        "dreamsweep.training.optim:torch_adamw", kohya_class="torch.optim.adamw.AdamW"
    ),
    "adamw8bit": Backend(
        "dreamsweep.training.optim:bitsandbytes_adamw8bit",
        cuda_package="bitsandbytes",
        kohya_class="bitsandbytes.optim.adamw.AdamW8bit",
    ),
}

# train.attention: (unet) -> None, sets the UNet's attention processors
ATTENTION = {
    "sdpa": Backend("dreamsweep.training.setup:sdpa_attention"),
    "eager": Backend("dreamsweep.training.setup:eager_attention"),
    "xformers": Backend("dreamsweep.training.setup:xformers_attention", cuda_package="xformers"),
}


@dataclass(frozen=True)
class Method:
    """What a method trains. `add_trained` (cfg, components) -> None adds and unfreezes the
    parameters a method trains on top of the base (drawn from train.seed); None: the
    base's own UNet (and text encoder with train.text_encoder) are trained."""

    add_trained: str | None = None


# method.name
METHODS = {
    "dreambooth": Method(),
    "lora": Method(add_trained="dreamsweep.training.lora:add_adapters"),
    # the trigger's new token embeddings only (training/embeddings.py; SD 1.x/2.x)
    "textual_inversion": Method(),
    # textual inversion, then method.then's entry (training/pivotal.py)
    "pivotal": Method(),
}


@dataclass(frozen=True)
class LoraTarget:
    """method.targets: the modules a target group adapts (peft's suffix match), in the UNet
    and in each text encoder (None: the group has no such module there)."""

    unet: tuple[str, ...]
    text: tuple[str, ...] | None = None


LORA_TARGETS = {
    "attention": LoraTarget(
        ("to_q", "to_k", "to_v", "to_out.0"), ("q_proj", "k_proj", "v_proj", "out_proj")
    ),
    "feed_forward": LoraTarget(("ff.net.0.proj", "ff.net.2"), ("fc1", "fc2")),
    "conv": LoraTarget(("conv1", "conv2", "conv_shortcut")),  # the UNet's resnets
}

# method.type of a LoRA-family method: (method config, target module names) -> peft's config
LORA_TYPES = {
    "lora": "dreamsweep.training.lora:lora_adapter",
    "loha": "dreamsweep.training.lora:loha_adapter",
    "lokr": "dreamsweep.training.lora:lokr_adapter",
}

# tracker: where numbers go besides metrics.jsonl, which is always written: the class
# (cfg, run_dir, job_type=...) of the tracker beside it, or None for the run folder alone.
TRACKERS: dict[str, str | None] = {
    "wandb": "dreamsweep.tracking.wandb:WandbTracker",
    "disk": None,
}

# data: where the subject's images are. A bundled folder ("module:constant"), or None: the
# folder data.instance_dir names (a user's photos, or a shipped folder its data config names).
DATA: dict[str, str | None] = {
    "toy": "dreamsweep.data.toy:TOY_SUBJECT_DIR",  # six drawn images shipped in assets/
    "toyworld": None,  # data.instance_dir=${asset:toyworld/subject} (conf/data/toyworld.yaml)
    "folder": None,
}
