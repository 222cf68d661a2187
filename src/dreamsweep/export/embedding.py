"""`dreamsweep export --format embedding`, and the single file's text encoders without the
trigger's rows. The embedding files themselves (what a run's best/ and model/ hold, and what
an export writes): models/embedding_files.py.
"""

from __future__ import annotations

from pathlib import Path

from dreamsweep.models.embedding_files import diffusers_file, save_trigger


def export_embedding(chosen, components, folder: Path, settings: dict) -> str:
    """`dreamsweep export --format embedding`: the cell's vectors in the diffusers and A1111 /
    ComfyUI files, with the run's settings (no local paths) and the cell in each file's
    metadata (``settings``: export/command.provenance)."""
    from dreamsweep.config import load_config
    from dreamsweep.models.families import family
    from dreamsweep.models.saving import stamp_metadata
    from dreamsweep.training.embeddings import file_stem

    cfg = load_config(chosen.run.config, check_machine=False)
    folder.mkdir(parents=True)
    trigger, n = save_trigger(cfg, components, folder)
    stamp_metadata(folder, settings)
    name, keys = file_stem(cfg.data.token), family(components).embedding_keys
    files = ", ".join(diffusers_file(Path(), i).name for i in range(len(keys)))
    return (
        f"the embedding of {trigger} ({n} vector(s) per text encoder): {files} for diffusers' "
        f"load_textual_inversion, {name}.safetensors ({', '.join(keys)}) for A1111 (type "
        f"{name}) and ComfyUI (embedding:{name})"
    )


def base_vocabulary(components):
    """What a single file is written from: ``components`` with each text encoder's rows of the
    base vocabulary only. A1111 and ComfyUI load a checkpoint's token embedding into the
    base's shape (a longer one fails), so the trigger travels as the embedding file beside it."""
    from types import SimpleNamespace

    from dreamsweep.models.families import family

    f, texts = family(components), {}
    for name, (tokenizer, encoder) in zip(
        f.text_encoder_names, f.text_pairs(components), strict=True
    ):
        state = encoder.state_dict()
        key = next(k for k in state if k.endswith("token_embedding.weight"))
        trimmed = {**state, key: state[key][: tokenizer.vocab_size]}  # without added tokens
        texts[name] = SimpleNamespace(state_dict=lambda trimmed=trimmed: trimmed)
    return SimpleNamespace(unet=components.unet, vae=components.vae, **texts)
