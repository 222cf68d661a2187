"""Which model family the exported weights belong to, decided in this one place.

Exports differ by family: SDXL has a second text encoder, its own single-file layout
(`conditioner.embedders.*`), kohya's sgm UNet names and its own ModelSpec names. Everything in
`dreamsweep.export` asks :func:`family_of` (and :func:`sd_version` within SD 1.x/2.x), which
names an entry of the model-family table (`models/families/`): pipelines, pipeline classes and
text encoders come from that table. Exports also meet pipelines and bare modules that are not
`SDComponents`, hence the look at their parts here.
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
    if isinstance(getattr(model, "family", None), str):  # SDComponents know theirs
        return model.family
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
    """The family's diffusers pipeline over ``components`` (shared, not copied), built where
    every pipeline is (the family's `assemble`, models/families/), with ``scheduler`` (default:
    models/pipeline.default_sampling_scheduler). A pipeline is given back as it is, with
    ``scheduler`` set when one is given."""
    from diffusers import DiffusionPipeline

    from dreamsweep.models.families import FAMILIES
    from dreamsweep.models.pipeline import default_sampling_scheduler

    if isinstance(components, DiffusionPipeline):
        if scheduler is not None:
            components.scheduler = scheduler
        return components
    chosen = scheduler if scheduler is not None else default_sampling_scheduler(components)
    return FAMILIES[family_of(components)].assemble(components, chosen)


def pipeline_class(family: Family) -> str:
    """The diffusers class that loads the family's folders and single files."""
    from dreamsweep.models.families import FAMILIES

    return FAMILIES[family].pipeline_class.__name__


def text_encoders(model: Any) -> tuple[str, ...]:
    """The attribute names of the model's text encoders."""
    from dreamsweep.models.families import FAMILIES

    return FAMILIES[family_of(model)].text_encoder_names
