"""Which model family the exported weights belong to, decided in this one place.

Exports differ by family: SDXL has a second text encoder, its own single-file layout
(`conditioner.embedders.*`), kohya's sgm UNet names and its own ModelSpec names. Everything in
`dreamsweep.export` asks :func:`family_of` (and :func:`sd_version` within SD 1.x/2.x), so the
model-family registry (`models/families/`) can replace these two functions without other edits.
"""

from __future__ import annotations

from typing import Any, Literal

Family = Literal["sd", "sdxl"]
Version = Literal["v1", "v2", "xl"]
FAMILIES: tuple[Family, ...] = ("sd", "sdxl")


def family_of(model: Any) -> Family:
    """`sdxl` for a StableDiffusionXLPipeline or components holding a second text encoder
    (`text_encoder_2`), `sd` otherwise (SD 1.x/2.x: one CLIP text encoder)."""
    from diffusers import StableDiffusionXLPipeline

    if isinstance(model, StableDiffusionXLPipeline):
        return "sdxl"
    return "sdxl" if getattr(model, "text_encoder_2", None) is not None else "sd"


def sd_version(model: Any, family: Family | None = None) -> Version:
    """`xl` for SDXL; within SD, `v2` (OpenCLIP text encoder layout) when the UNet attends to
    1024-wide text features, else `v1`."""
    family = family or family_of(model)
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(FAMILIES)}")
    if family == "sdxl":
        return "xl"
    return "v2" if model.unet.config.cross_attention_dim == 1024 else "v1"


def pipeline_of(components: Any, scheduler: Any = None) -> Any:
    """The diffusers pipeline of the family over ``components`` (shared, not copied), with
    ``scheduler`` (default: the family's sampling default). A pipeline is given back as it is,
    with ``scheduler`` set when one is given."""
    from diffusers import DiffusionPipeline

    if isinstance(components, DiffusionPipeline):
        if scheduler is not None:
            components.scheduler = scheduler
        return components
    if family_of(components) == "sd":
        from dreamsweep.models.pipeline import assemble_pipeline

        return assemble_pipeline(components, scheduler)
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    if scheduler is None:  # what StableDiffusionXLPipeline ships with
        scheduler = EulerDiscreteScheduler.from_config(components.noise_scheduler.config)
    return StableDiffusionXLPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        text_encoder_2=components.text_encoder_2,
        tokenizer=components.tokenizer,
        tokenizer_2=components.tokenizer_2,
        unet=components.unet,
        scheduler=scheduler,
        force_zeros_for_empty_prompt=getattr(components, "force_zeros_for_empty_prompt", True),
    )


def pipeline_class(family: Family) -> str:
    """The diffusers class that loads the family's folders and single files."""
    return "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline"


def text_encoders(model: Any) -> tuple[str, ...]:
    """The attribute names of the model's text encoders."""
    return ("text_encoder", "text_encoder_2") if family_of(model) == "sdxl" else ("text_encoder",)
