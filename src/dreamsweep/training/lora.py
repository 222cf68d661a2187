"""LoRA-family adapters on a frozen base, through peft: LoRA (Hu et al. 2021,
arXiv:2106.09685) and the LyCORIS variants peft provides, LoHa (Hadamard product, Hyeon-Woo et
al. 2022, arXiv:2108.06098) and LoKr (Kronecker product, Yeh et al. 2024, arXiv:2309.14859).

LoRA is saved in diffusers' format, so that `from_pretrained(base)` + `load_lora_weights(folder)`
loads it; its configs go into the file's metadata (diffusers' `*_lora_adapter_metadata`):
without them diffusers reloads a LoRA at alpha = rank, i.e. at the wrong strength whenever
alpha was set (or swept) to something else. diffusers cannot load LoHa/LoKr, so those are
saved in peft's own format (`unet/` and `text_encoder/`, each `adapter_config.json` +
`adapter_model.safetensors`), which `load_lora_components` (and peft) reads back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from peft import (
    LoHaConfig,
    LoKrConfig,
    LoraConfig,
    PeftConfig,
    get_peft_model_state_dict,
    inject_adapter_in_model,
    set_peft_model_state_dict,
)
from safetensors.torch import load_file

from dreamsweep.choices import LORA_TARGETS, LORA_TYPES
from dreamsweep.config import MethodConfig, RunConfig
from dreamsweep.models.components import SDComponents
from dreamsweep.models.families import family
from dreamsweep.models.portable import LORA_FILE
from dreamsweep.registry import load, pick
from dreamsweep.tensor_files import save_tensors

PEFT_FILES = ("adapter_config.json", "adapter_model.safetensors")  # per module, LoHa/LoKr
BASE_FILE = "base_model.json"  # where the frozen base the LoRA goes on lives
# Module names (peft's suffix match) of each target group, per model (choices.LORA_TARGETS).
UNET_TARGETS = {name: list(t.unet) for name, t in LORA_TARGETS.items()}
TEXT_TARGETS = {name: list(t.text) for name, t in LORA_TARGETS.items() if t.text}


def lora_config(method: MethodConfig, groups: dict[str, list[str]]) -> PeftConfig:
    """The adapter config of `method.type` (choices.LORA_TYPES) on `method.targets`' modules."""
    targets = sorted({m for t in method.targets for m in groups.get(t, [])})
    return load(pick(LORA_TYPES, method.type, "method.type"))(method, targets)


def lora_adapter(method: MethodConfig, targets: list[str]) -> PeftConfig:
    return LoraConfig(
        r=method.rank,
        lora_alpha=method.alpha,
        lora_dropout=method.dropout or 0.0,
        target_modules=targets,
        init_lora_weights="gaussian",  # A random, B zero: training starts at the base model
    )


def loha_adapter(method: MethodConfig, targets: list[str]) -> PeftConfig:
    return LoHaConfig(
        r=method.rank, alpha=method.alpha, rank_dropout=method.dropout or 0.0,
        target_modules=targets, init_weights=True,  # one factor zero: starts at the base
    )  # fmt: skip


def lokr_adapter(method: MethodConfig, targets: list[str]) -> PeftConfig:
    return LoKrConfig(
        r=method.rank, alpha=method.alpha, rank_dropout=method.dropout or 0.0,
        target_modules=targets, init_weights=True,
    )  # fmt: skip


def is_lora(cfg: RunConfig) -> bool:
    """LoRA-family adapters train (method=lora, or pivotal tuning's phase 2 with then=lora)."""
    m = cfg.method
    return m.name == "lora" or (m.name == "pivotal" and m.then == "lora")


def add_adapters(cfg: RunConfig, c: SDComponents) -> None:
    """Freeze the base and add the adapters (the text encoders' only when they are trained:
    SDXL's both); only the adapters' parameters then require grad."""
    c.unet.requires_grad_(False)
    inject_adapter_in_model(lora_config(cfg.method, UNET_TARGETS), c.unet)
    for encoder in family(c).text_encoders(c):
        encoder.requires_grad_(False)
        if cfg.train.text_encoder:  # (transformers' add_adapter wants a newer peft; same layers)
            inject_adapter_in_model(lora_config(cfg.method, TEXT_TARGETS), encoder)


def save_lora(cfg: RunConfig, c: SDComponents, folder: Path, base: str, scheduler=None) -> None:
    """The adapters (LoRA: diffusers' format, configs in the metadata; LoHa/LoKr: peft's),
    plus `base_model.json` (the base's location and the scheduler to sample with) into
    ``folder`` (made by the caller, e.g. a temporary folder that is swapped in)."""
    if cfg.method.type != "lora":
        _save_peft(cfg, c, folder)
    else:
        _save_diffusers_lora(cfg, c, folder)
    info: dict[str, Any] = {"base": base, "type": cfg.method.type}
    if scheduler is not None:
        info["scheduler"] = scheduler.config
    (folder / BASE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")


def _save_peft(cfg: RunConfig, c: SDComponents, folder: Path) -> None:
    modules = {"unet": (c.unet, UNET_TARGETS)}
    if cfg.train.text_encoder:
        for name in family(c).text_encoder_names:
            modules[name] = (getattr(c, name), TEXT_TARGETS)
    for name, (module, groups) in modules.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        config = lora_config(cfg.method, groups).to_dict()
        (folder / name / PEFT_FILES[0]).write_text(json.dumps(config, indent=2, default=list))
        state = {k: v.contiguous() for k, v in get_peft_model_state_dict(module).items()}
        save_tensors(state, folder / name / PEFT_FILES[1])


def _save_diffusers_lora(cfg: RunConfig, c: SDComponents, folder: Path) -> None:
    f = family(c)
    texts = {}
    if cfg.train.text_encoder:  # SD: text_encoder; SDXL: text_encoder and text_encoder_2
        for name in f.text_encoder_names:
            texts[f"{name}_lora_layers"] = get_peft_model_state_dict(getattr(c, name))
            texts[f"{name}_lora_adapter_metadata"] = lora_config(cfg.method, TEXT_TARGETS).to_dict()
    f.pipeline_class.save_lora_weights(  # peft's key names (lora_A/lora_B), as now saved
        str(folder),
        unet_lora_layers=get_peft_model_state_dict(c.unet),
        unet_lora_adapter_metadata=lora_config(cfg.method, UNET_TARGETS).to_dict(),
        safe_serialization=True,
        **texts,
    )


def is_lora_folder(folder: Path) -> bool:
    """Adapters and the base's location: a LoRA (diffusers' format) or a LoHa/LoKr (peft's)."""
    saved = (folder / LORA_FILE).exists() or (folder / "unet" / PEFT_FILES[1]).exists()
    return saved and (folder / BASE_FILE).exists()


def lora_base(folder: Path) -> str:
    """The base a LoRA folder goes on: a path (relative ones are relative to the folder), a
    model shipped in the package (`asset:toyworld/base`) or a hub id."""
    from dreamsweep.config import local_location

    base = local_location(json.loads((folder / BASE_FILE).read_text())["base"])
    local = (folder / base).resolve() if not Path(base).is_absolute() else Path(base)
    return str(local) if local.exists() else base


def load_lora_components(folder: Path) -> SDComponents:
    """What a user does: the base pipeline, then `load_lora_weights(folder)`; the adapters are
    then fused into the weights (what a merged checkpoint, e.g. a single file, holds)."""
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.models.pipeline import assemble_pipeline

    components = load_components(saved_model(lora_base(folder)))
    if not (folder / LORA_FILE).exists():  # LoHa/LoKr: peft's own format
        for name in ("unet", *family(components).text_encoder_names):
            if (folder / name / PEFT_FILES[1]).exists():
                module = getattr(components, name)
                inject_adapter_in_model(PeftConfig.from_pretrained(str(folder / name)), module)
                set_peft_model_state_dict(module, load_file(str(folder / name / PEFT_FILES[1])))
        return components  # adapters live (not fused): a merged export needs type=lora
    pipe = assemble_pipeline(components)  # shares these modules
    pipe.load_lora_weights(str(folder))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    return components
