"""Weights and tokenizer files in the layout every common stack reads.

Text encoder keys:

transformers >= 5.6 flattened `CLIPTextModel`: its state dict reads `encoder.layers.0...`
where transformers 4.x, kohya, A1111 and the original checkpoints read
`text_model.encoder.layers.0...`. transformers 4.x loads a file without the root with 36
missing and 36 unexpected keys and initialises the text encoder at random (a warning only),
and diffusers < 0.33 cannot place LoRA keys without it; transformers 5.x reads both. So every
file we write names text-encoder weights with the `text_model.` root.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from safetensors import safe_open

from dreamsweep import atomic
from dreamsweep.tensor_files import save_tensors

LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' LoRA weights (training/lora.py)
TEXT_ROOT = "text_model."
_UNDER_ROOT = ("embeddings.", "encoder.", "final_layer_norm.")  # CLIPTextTransformer's parts
V = TypeVar("V")


def with_text_root(key: str) -> str:
    """`encoder.layers.0.mlp.fc1.weight` -> `text_model.encoder.layers.0.mlp.fc1.weight`; keys
    already rooted, or outside the transformer (`text_projection.weight`), stay as they are."""
    return TEXT_ROOT + key if key.startswith(_UNDER_ROOT) else key


def rooted_text_keys(state_dict: Mapping[str, V]) -> dict[str, V]:
    """A text encoder's state dict (or LoRA layers) with every key under `text_model.`."""
    return {with_text_root(k): v for k, v in state_dict.items()}


def rooted_lora_keys(state_dict: Mapping[str, V], prefix: str = "text_encoder.") -> dict[str, V]:
    """A diffusers LoRA file's keys with the text encoder's under `text_model.`
    (`text_encoder.encoder.layers.0...lora_A.weight` -> `text_encoder.text_model.encoder...`):
    diffusers < 0.33 on transformers 4.x fails on them otherwise (IndexError in
    `get_peft_kwargs`); diffusers 0.42 on transformers 5.x reads both."""
    return {
        prefix + with_text_root(k[len(prefix) :]) if k.startswith(prefix) else k: v
        for k, v in state_dict.items()
    }


def add_vocab_files(folder: Path) -> None:
    """`vocab.json` and `merges.txt` beside every BPE `tokenizer.json` under ``folder``:
    transformers 5.x saves only tokenizer.json, and transformers 4.x's `CLIPTokenizer` (the
    class model_index.json names) reads only the two vocabulary files."""
    for file in folder.rglob("tokenizer.json"):
        model = json.loads(file.read_text(encoding="utf-8")).get("model", {})
        if model.get("type") != "BPE" or (file.parent / "vocab.json").exists():
            continue
        merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
        atomic.write_text(
            file.parent / "vocab.json", json.dumps(model["vocab"], ensure_ascii=False)
        )
        atomic.write_text(file.parent / "merges.txt", "#version: 0.2\n" + "\n".join(merges) + "\n")


def portable_keys(file: Path, tensors: dict[str, V]) -> dict[str, V]:
    """The keys of a text encoder's weights or of a diffusers LoRA file rooted as above;
    other files' keys unchanged."""
    if file.name == LORA_FILE:  # SDXL's second text encoder too
        return rooted_lora_keys(rooted_lora_keys(tensors), "text_encoder_2.")
    if file.parent.name.startswith("text_encoder") and file.name == "model.safetensors":
        return rooted_text_keys(tensors)
    return tensors


def make_portable(folder: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Rewrite every safetensors file under ``folder`` with portable keys, the shared mode and
    ``metadata`` added, and give its tokenizers the vocabulary files: what `save_pretrained`
    and `save_lora_weights` leave, made readable by every stack and user."""
    for file in folder.rglob("*.safetensors"):
        with safe_open(str(file), framework="pt") as f:
            merged = {**(f.metadata() or {}), **(metadata or {})}
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not iterable)
        save_tensors(portable_keys(file, tensors), file, metadata=merged)
    add_vocab_files(folder)
