"""The model card's section on a textual-inversion or pivotal run's embedding: where the
A1111/ComfyUI file goes, and the diffusers code that loads it (SDXL: `clip_l` and `clip_g`, one
text encoder each, as diffusers' docs show)."""

from __future__ import annotations

from dreamsweep.export.card import (
    EMBEDDING,
    SDXL_PIPELINE,
    CardInput,
    _base_line,
    _python,
    md_text,
    py_str,
)
from dreamsweep.training.embeddings import typed_trigger


def _embedding_calls(card: CardInput, folder: str, trigger: str) -> tuple[list[str], list[str]]:
    """(imports, lines) loading the embedding into the pipeline: SDXL, each encoder's key of the
    A1111/ComfyUI file into its text encoder and tokenizer (diffusers' documented way)."""
    from dreamsweep.models.embedding_files import DIFFUSERS_FILE

    if card.pipeline_class != SDXL_PIPELINE:
        return [], [
            f"pipe.load_textual_inversion({py_str(f'{folder}/{DIFFUSERS_FILE}')}, "
            f"token={py_str(trigger)})"
        ]
    name = trigger[1:-1]
    lines = [f"state_dict = load_file({py_str(f'{folder}/{name}.safetensors')})"]
    for key, suffix in (("clip_l", ""), ("clip_g", "_2")):
        lines.append(
            f"pipe.load_textual_inversion(state_dict[{key!r}], token={py_str(trigger)}, "
            f"text_encoder=pipe.text_encoder{suffix}, tokenizer=pipe.tokenizer{suffix})"
        )
    return ["from safetensors.torch import load_file"], lines


def embedding_section(card: CardInput) -> list[str]:
    folder, trigger = card.kinds[EMBEDDING], typed_trigger(card.chosen.run.config)
    name = trigger[1:-1]
    extra_imports, calls = _embedding_calls(card, folder, trigger)
    if (card.chosen.run.config.get("method") or {}).get("name") == "pivotal":
        return [
            f"### The trigger's embedding ({md_text(folder)}/): type {md_text(trigger)}",
            "",
            f"With the single file in A1111, put {md_text(name)}.safetensors in embeddings/ and "
            f"write {md_text(name)}; in ComfyUI, put it in models/embeddings and write "
            f"embedding:{md_text(name)}. The diffusers pipeline already knows {md_text(trigger)};"
            f" after load_lora_weights, run {md_text('; '.join([*extra_imports, *calls]))}.",
        ]
    imports = [f"from diffusers import {card.pipeline_class}, {card.scheduler_class}"]
    body = [
        _base_line(card),
        f"pipe.scheduler = {card.scheduler_class}.from_config(pipe.scheduler.config)",
        *calls,
    ]
    return [
        f"### Textual-inversion embedding ({md_text(folder)}/): type {md_text(trigger)}",
        "",
        f"A1111: put {md_text(name)}.safetensors in embeddings/ and write {md_text(name)} in "
        f"the prompt; ComfyUI: put it in models/embeddings and write embedding:{md_text(name)}."
        f" diffusers, with the {md_text(card.scheduler_class)} the cell was scored with:",
        "",
        _python(card, [*imports, *extra_imports], body),
    ]
