"""The training loop's named choices: noise, optimizer, attention backend and method, each one
table (name -> "module:function" that builds it) that config_checks.py checks `train.noise`,
`optim.name`, `train.attention` and `method` against. Adding a choice is one function plus
one entry here. Imports neither torch nor diffusers (see dreamsweep/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# train.noise: (latents, train config, generator) -> the noise of a training step
NOISES = {
    "gaussian": "dreamsweep.training.loss:gaussian_noise",
    "offset": "dreamsweep.training.loss:offset_step_noise",
    "multires": "dreamsweep.training.loss:multires_step_noise",
}

# optim.name: (optim config, parameter groups, AdamW keyword arguments) -> the optimizer
OPTIMIZERS = {
    "adamw": "dreamsweep.training.optim:torch_adamw",
    "adamw8bit": "dreamsweep.training.optim:bitsandbytes_adamw8bit",
}

# train.attention: (unet) -> None, sets the UNet's attention processors
ATTENTION = {
    "sdpa": "dreamsweep.training.setup:sdpa_attention",
    "eager": "dreamsweep.training.setup:eager_attention",
    "xformers": "dreamsweep.training.setup:xformers_attention",
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
}
