"""A textual-inversion embedding in the files people load it from.

- diffusers: `learned_embeds.safetensors`, one key, the trigger -> [vectors, width], as
  diffusers' textual_inversion.py example saves it; `pipe.load_textual_inversion(folder)`
  (or the file, with `token=`) loads it, and a prompt's `<sks>` then expands to its vectors.
- A1111 / ComfyUI (SD 1.x/2.x): `<name>.safetensors` with the one key `emb_params`
  ([vectors, width]); the name is the trigger to type in A1111 (the file's stem) or
  `embedding:<name>` in ComfyUI. A1111's loader takes a safetensors file's only tensor (its
  `string_to_param` branch is for .pt files), ComfyUI's `load_embed` reads the file's values
  when the per-encoder key (`clip_l`, SDXL's layout) is absent, diffusers reads `emb_params`.

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


def a1111_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.safetensors"


def save_embedding_files(folder: Path, trigger: str, name: str, vectors: torch.Tensor) -> None:
    """Both files of one trigger's vectors ([n, width]) into ``folder``."""
    vectors = vectors.detach().to("cpu", torch.float32).contiguous()
    save_tensors({trigger: vectors}, folder / DIFFUSERS_FILE)
    save_tensors({A1111_KEY: vectors.clone()}, a1111_file(folder, name))


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
    """``components`` with the folder's embedding (if any) loaded: a pivotal LoRA's."""
    from dreamsweep.training.embeddings import placeholder_tokens, set_vectors

    if (folder / DIFFUSERS_FILE).exists():
        trigger, vectors = read_embedding(folder)
        tokens = placeholder_tokens(trigger, vectors.shape[0])
        set_vectors(components.tokenizer, components.text_encoder, tokens, vectors)
    return components


def read_embedding(folder: Path) -> tuple[str, torch.Tensor]:
    """(trigger, vectors) of an embedding folder's diffusers file."""
    tensors = load_file(str(folder / DIFFUSERS_FILE))
    if len(tensors) != 1:
        raise ValueError(f"{folder / DIFFUSERS_FILE}: expected one trigger, found {list(tensors)}")
    return next(iter(tensors.items()))


def load_embedding_components(folder: Path):
    """What a user does: the base model, then the embedding loaded into its tokenizer and
    text encoder (the components then draw what the run scored)."""
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base

    return with_embedding(load_components(saved_model(lora_base(folder))), folder)


def save_run_embedding(cfg, components, folder: Path, base: str, scheduler=None) -> None:
    """A textual-inversion run's embedding (the vectors its text encoder holds now) and the
    base it goes on into ``folder`` (made by the caller)."""
    from dreamsweep.training.embeddings import file_stem, learned_vectors, placeholder_tokens

    tokens = placeholder_tokens(cfg.data.token, cfg.method.num_vectors)
    vectors = learned_vectors(components.tokenizer, components.text_encoder, tokens)
    save_embedding_files(folder, tokens[0], file_stem(cfg.data.token), vectors)
    write_base_info(folder, base, tokens[0], len(tokens), scheduler)


def export_embedding(chosen, components, folder: Path) -> str:
    """`dreamsweep export --format embedding`: the cell's vectors in both files, with the
    run's settings (no local paths) and the cell in each file's metadata."""
    from dreamsweep.config import load_config
    from dreamsweep.export.command import provenance
    from dreamsweep.models.saving import stamp_metadata
    from dreamsweep.training.embeddings import file_stem, learned_vectors, placeholder_tokens

    cfg = load_config(chosen.run.config, check_machine=False)
    tokens = placeholder_tokens(cfg.data.token, cfg.method.num_vectors)
    vectors = learned_vectors(components.tokenizer, components.text_encoder, tokens)
    name = file_stem(cfg.data.token)
    folder.mkdir(parents=True)
    save_embedding_files(folder, tokens[0], name, vectors)
    stamp_metadata(folder, provenance(chosen))
    return (
        f"the embedding of {tokens[0]} ({len(tokens)} vector(s) of {vectors.shape[1]}): "
        f"{DIFFUSERS_FILE} for diffusers' load_textual_inversion, {name}.safetensors "
        f"(emb_params) for A1111 (type {name}) and ComfyUI (embedding:{name})"
    )


def add_pivotal_embedding(cfg, components, folder: Path) -> None:
    """Pivotal tuning's weights are a pipeline or a LoRA plus the embedding: its two files
    beside them (nothing for other methods)."""
    from dreamsweep.training.embeddings import file_stem, learned_vectors, placeholder_tokens
    from dreamsweep.training.pivotal import is_pivotal

    if not is_pivotal(cfg):
        return
    tokens = placeholder_tokens(cfg.data.token, cfg.method.num_vectors)
    vectors = learned_vectors(components.tokenizer, components.text_encoder, tokens)
    save_embedding_files(folder, tokens[0], file_stem(cfg.data.token), vectors)


def base_vocabulary(components):
    """What a single file is written from: ``components`` with the text encoder's rows of the
    base vocabulary only. A1111 and ComfyUI load a checkpoint's token embedding into the
    base's shape (a longer one fails), so the trigger travels as the embedding file beside it."""
    from types import SimpleNamespace

    state = components.text_encoder.state_dict()
    key = next(k for k in state if k.endswith("token_embedding.weight"))
    rows = components.tokenizer.vocab_size  # without added tokens
    trimmed = {**state, key: state[key][:rows]}
    text_encoder = SimpleNamespace(state_dict=lambda: trimmed)
    return SimpleNamespace(unet=components.unet, vae=components.vae, text_encoder=text_encoder)
