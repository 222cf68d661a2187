"""The export formats by the name `dreamsweep export --format` takes: the one table the command
checks names against, writes from (in this order: single-file reuses what diffusers wrote)
and prints its --format help from. A writer is "module:function" taking the export's
command.FormatJob, imported when it writes (dreamsweep/registry.py): the CLI's help needs
no torch.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    help: str  # what the user gets, for `dreamsweep export --help`
    write: str  # "module:function": (command.FormatJob) -> None


FORMATS: dict[str, Format] = {
    "embedding": Format(
        "a textual-inversion or pivotal run's trigger embedding (diffusers "
        "load_textual_inversion, A1111/ComfyUI embeddings/)",
        "dreamsweep.export.command:write_embedding",
    ),
    "diffusers": Format(
        "a diffusers folder (from_pretrained; a LoRA run's adapters for load_lora_weights)",
        "dreamsweep.export.command:write_diffusers",
    ),
    "single-file": Format(
        "one .safetensors in the original Stable Diffusion layout (A1111, ComfyUI)",
        "dreamsweep.export.command:write_single_file",
    ),
    "lora-kohya": Format(
        "a LoRA run's adapters as one .safetensors in the kohya/A1111 layout",
        "dreamsweep.export.command:write_kohya",
    ),
}
DEFAULT_FORMAT = "diffusers"


def formats_help() -> str:
    """The --format help, one clause per format of the table."""
    listed = "; ".join(f"{name}: {f.help}" for name, f in FORMATS.items())
    return f"{listed}. Default {DEFAULT_FORMAT}; may be given several times"
