"""A textual-inversion embedding in the files people load it from.

- diffusers: `learned_embeds.safetensors`, one key, the trigger -> [vectors, width], as
  diffusers' textual_inversion.py example saves it; `pipe.load_textual_inversion(folder)`
  (or the file, with `token=`) loads it, and a prompt's `<sks>` then expands to its vectors.
  SDXL: that file holds the first text encoder's vectors and `learned_embeds_2.safetensors`
  the second's (as diffusers' textual_inversion_sdxl.py saves them), each loaded with
  `load_textual_inversion(file, token=..., text_encoder=..., tokenizer=...)`.
- A1111 / ComfyUI: `<name>.safetensors`, one key per text encoder (the family's
  embedding_keys): SD 1.x/2.x `emb_params` ([vectors, width]); SDXL `clip_l` ([vectors, 768])
  and `clip_g` ([vectors, 1280]), the layout both read for SDXL and whose keys diffusers'
  documented SDXL loading passes one by one (`state_dict["clip_g"]`, text_encoder_2, ...).
  The name is the trigger to type in A1111 (the file's stem) or `embedding:<name>` in
  ComfyUI. A1111's loader takes an SD file's only tensor (its `string_to_param` branch is for
  .pt files), ComfyUI's `load_embed` reads the file's values when the per-encoder key is
  absent, diffusers reads `emb_params`.

An embedding folder also holds `base_model.json` (training/lora.py's BASE_FILE: the base it
was trained on, the sampling scheduler, and the trigger), so a run's `best/` and `model/` say
what they go on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from dreamsweep.tensor_files import save_tensors

DIFFUSERS_FILE = "learned_embeds.safetensors"  # diffusers' TEXT_INVERSION_NAME_SAFE
A1111_KEY = "emb_params"
BASE_FILE = "base_model.json"  # as training/lora.py's (one reader: lora_base)


def diffusers_file(folder: Path, index: int = 0) -> Path:
    """The diffusers file of the ``index``-th text encoder: learned_embeds(_2).safetensors."""
    return folder / (DIFFUSERS_FILE if index == 0 else f"learned_embeds_{index + 1}.safetensors")


def a1111_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.safetensors"


def save_embedding_files(
    folder: Path, trigger: str, name: str, vectors: dict[str, torch.Tensor]
) -> None:
    """The files of one trigger's vectors (key -> [n, width], one per text encoder, in the
    family's order) into ``folder``: a diffusers file per encoder, and the A1111 one."""
    vectors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in vectors.items()}
    for i, v in enumerate(vectors.values()):
        save_tensors({trigger: v}, diffusers_file(folder, i))
    save_tensors({k: v.clone() for k, v in vectors.items()}, a1111_file(folder, name))


def write_base_info(folder: Path, base: str, trigger: str, num_vectors: int, scheduler=None):
    info: dict[str, Any] = {
        "base": base,
        "type": "textual_inversion",
        "trigger": trigger,
        "num_vectors": num_vectors,
    }
    if scheduler is not None:
        info["scheduler"] = scheduler.config
    (folder / BASE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")


def is_embedding_folder(folder: Path) -> bool:
    """A textual-inversion folder: the embedding on an unchanged base."""
    if not ((folder / DIFFUSERS_FILE).exists() and (folder / BASE_FILE).exists()):
        return False
    return json.loads((folder / BASE_FILE).read_text())["type"] == "textual_inversion"


def with_embedding(components, folder: Path):
    """``components`` with the folder's embedding (if any) loaded into each text encoder."""
    from dreamsweep.models.families import family
    from dreamsweep.training.embeddings import placeholder_tokens, set_vectors

    for i, (tokenizer, encoder) in enumerate(family(components).text_pairs(components)):
        if diffusers_file(folder, i).exists():
            trigger, vectors = read_embedding(folder, i)
            tokens = placeholder_tokens(trigger, vectors.shape[0])
            set_vectors(tokenizer, encoder, tokens, vectors)
    return components


def read_embedding(folder: Path, index: int = 0) -> tuple[str, torch.Tensor]:
    """(trigger, vectors) of an embedding folder's diffusers file (of text encoder ``index``)."""
    path = diffusers_file(folder, index)
    tensors = load_file(str(path))
    if len(tensors) != 1:
        raise ValueError(f"{path}: expected one trigger, found {list(tensors)}")
    return next(iter(tensors.items()))


def load_embedding_components(folder: Path):
    """What a user does: the base model, then the embedding loaded into its tokenizer and
    text encoder (the components then draw what the run scored)."""
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base

    return with_embedding(load_components(saved_model(lora_base(folder))), folder)


def save_run_embedding(cfg, components, folder: Path, base: str, scheduler=None) -> None:
    """A textual-inversion run's embedding (the vectors its text encoders hold now) and the
    base it goes on into ``folder`` (made by the caller)."""
    trigger, n = save_trigger(cfg, components, folder)
    write_base_info(folder, base, trigger, n, scheduler)


def save_trigger(cfg, components, folder: Path) -> tuple[str, int]:
    """The run's trigger's files in ``folder``; (the trigger, its number of vectors)."""
    from dreamsweep.training.embeddings import file_stem, placeholder_tokens, trigger_vectors

    tokens = placeholder_tokens(cfg.data.token, cfg.method.num_vectors)
    vectors = trigger_vectors(components, cfg.data.token, cfg.method.num_vectors)
    save_embedding_files(folder, tokens[0], file_stem(cfg.data.token), vectors)
    return tokens[0], len(tokens)


def add_pivotal_embedding(cfg, components, folder: Path) -> None:
    """Pivotal tuning's weights are a pipeline or a LoRA plus the embedding: its files beside
    them (nothing for other methods)."""
    from dreamsweep.training.pivotal import is_pivotal

    if is_pivotal(cfg):
        save_trigger(cfg, components, folder)
