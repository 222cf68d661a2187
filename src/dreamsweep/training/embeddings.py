"""Textual inversion (Gal et al. 2022, arXiv:2208.01618): new tokens whose embedding rows are
the only weights that learn, as diffusers' examples/textual_inversion/textual_inversion.py does.

The functions that touch a model take one (tokenizer, text_encoder) pair, so a family with two
text encoders (SDXL) applies them to each (`add_trigger`, `trigger_vectors`: every pair of the
family, in its order). The trigger a prompt's `{token}` becomes is the
placeholder `<word>` (plus `<word>_1`, ... for more vectors: diffusers' naming, which its
`load_textual_inversion` expands a prompt's `<word>` into), never a word the tokenizer knows.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from dreamsweep.config import RunConfig
from dreamsweep.models.families import family

EMBEDDING_METHODS = ("textual_inversion", "pivotal")


def trains_embeddings(cfg: RunConfig) -> bool:
    """New tokens are added and their embeddings learn (in pivotal's first phase at least)."""
    return cfg.method.name in EMBEDDING_METHODS


def embedding_only(cfg: RunConfig) -> bool:
    """Only the embeddings learn: the run's weights are an embedding file on the base model."""
    return cfg.method.name == "textual_inversion"


def placeholder(token: str) -> str:
    """`sks` -> `<sks>`, `green star` -> `<green-star>`; a given `<...>` stays as it is."""
    if token.startswith("<") and token.endswith(">"):
        return token
    return "<" + "-".join(token.split()) + ">"


def placeholder_tokens(token: str, num_vectors: int) -> list[str]:
    """The tokens of one trigger: `<sks>`, `<sks>_1`, ... (diffusers' multi-vector naming)."""
    first = placeholder(token)
    return [first] + [f"{first}_{i}" for i in range(1, num_vectors)]


def file_stem(token: str) -> str:
    """The trigger as a file name (A1111's trigger is the embedding file's stem)."""
    return placeholder(token)[1:-1]


def init_text(cfg: RunConfig) -> str:
    return cfg.method.init_word or cfg.data.class_name


def with_trigger(cfg: RunConfig) -> RunConfig:
    """The run's settings with `{token}` filled by the placeholder tokens, spelled out as the
    tokenizer reads them (what diffusers' pipeline turns a typed `<sks>` into)."""
    if not trains_embeddings(cfg):
        return cfg
    words = " ".join(placeholder_tokens(cfg.data.token, cfg.method.num_vectors))
    return replace(cfg, data=replace(cfg.data, token=words))


def typed_prompt(prompt: str, cfg: RunConfig) -> str:
    """A scored prompt as a user types it after `load_textual_inversion`: the trigger once."""
    if not trains_embeddings(cfg):
        return prompt
    return typed(prompt, cfg.data.token, cfg.method.num_vectors)


def typed(prompt: str, token: str, num_vectors: int) -> str:
    """``prompt`` with the trigger's tokens spelled out (`<sks> <sks>_1`) written once."""
    tokens = placeholder_tokens(token, num_vectors)
    return prompt.replace(" ".join(tokens), tokens[0])


def typed_trigger(settings: dict) -> str:
    """The word to type, from a run's settings (config.yaml as a dict): `<sks>` for a run
    that learned embeddings, data.token otherwise."""
    token = str((settings.get("data") or {}).get("token", "sks"))
    method = (settings.get("method") or {}).get("name")
    return placeholder(token) if method in EMBEDDING_METHODS else token


def add_tokens(tokenizer, text_encoder, tokens: list[str], init: str) -> list[int]:
    """Add ``tokens`` to the tokenizer and rows for them to the text encoder's embedding, each
    row initialised from the embedding of ``init``'s tokens (vector i from init token
    i * k // n of k, as A1111 spreads a longer initialisation text; one token: all alike, as
    diffusers does). Returns the new token ids (consecutive)."""
    added = tokenizer.add_tokens(tokens)
    if added != len(tokens):
        raise ValueError(
            f"data.token: the tokenizer already knows {tokens[0]}; choose a trigger it does not"
        )
    return init_rows(tokenizer, text_encoder, tokens, init)


def init_rows(tokenizer, text_encoder, tokens: list[str], init: str) -> list[int]:
    """The rows of ``tokens`` (in the tokenizer already) added to the text encoder and set
    from ``init`` as add_tokens says; their ids."""
    init_ids = tokenizer.encode(init, add_special_tokens=False)
    if not init_ids:
        raise ValueError(f"method.init_word: '{init}' has no tokens; give a word, e.g. dog")
    ids = tokenizer.convert_tokens_to_ids(tokens)
    text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # rows set below
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        for i, token_id in enumerate(ids):
            weight[token_id] = weight[init_ids[i * len(init_ids) // len(ids)]].clone()
    return ids


def set_vectors(tokenizer, text_encoder, tokens: list[str], vectors: torch.Tensor) -> None:
    """Put learned ``vectors`` ([n, width]) into the rows of ``tokens`` (added if missing)."""
    missing = [t for t in tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing)
    if text_encoder.get_input_embeddings().weight.shape[0] < len(tokenizer):
        text_encoder.resize_token_embeddings(len(tokenizer), mean_resizing=False)  # rows set below
    weight = text_encoder.get_input_embeddings().weight
    with torch.no_grad():
        weight[tokenizer.convert_tokens_to_ids(tokens)] = vectors.to(weight)


def learned_vectors(tokenizer, text_encoder, tokens: list[str]) -> torch.Tensor:
    """The rows of ``tokens``, detached on the CPU in float32: what the embedding files hold."""
    weight = text_encoder.get_input_embeddings().weight
    ids = tokenizer.convert_tokens_to_ids(tokens)
    return weight[ids].detach().to("cpu", torch.float32).contiguous()


@dataclass
class FrozenRows:
    """The embedding rows that must not change: their gradients are masked (so clipping and
    Adam see only the new rows) and, as diffusers' script does, their values are restored
    after each optimiser step (weight decay still touches every row of the matrix)."""

    weight: torch.nn.Parameter
    original: torch.Tensor  # the rows as they were (every row; only frozen ones are used)
    frozen: torch.Tensor  # bool per row: True = keep

    @classmethod
    def around(cls, text_encoder, trained_ids: list[int]) -> FrozenRows:
        weight = text_encoder.get_input_embeddings().weight
        frozen = torch.ones(weight.shape[0], dtype=torch.bool, device=weight.device)
        frozen[trained_ids] = False
        rows = cls(weight, weight.detach().clone(), frozen)
        keep = (~frozen).to(weight.dtype).unsqueeze(1)
        weight.register_hook(lambda grad: grad * keep)
        return rows

    @torch.no_grad()
    def restore(self) -> None:
        self.weight[self.frozen] = self.original[self.frozen]


def train_only_embeddings(text_encoder) -> torch.nn.Parameter:
    """Freeze the text encoder except its token embedding matrix; return that matrix."""
    text_encoder.requires_grad_(False)
    weight = text_encoder.get_input_embeddings().weight
    weight.requires_grad_(True)
    return weight


def add_trigger(cfg: RunConfig, components) -> list[list[int]]:
    """The run's trigger tokens added to every (tokenizer, text encoder) pair of the family
    (SDXL: both, each initialised from its own encoder's embedding of the init word); the new
    ids of each, in the family's order."""
    tokens = placeholder_tokens(cfg.data.token, cfg.method.num_vectors)
    ids, seen = [], []
    for tokenizer, encoder in family(components).text_pairs(components):
        if any(tokenizer is t for t in seen):  # one tokenizer in both slots (the tiny SDXL)
            ids.append(init_rows(tokenizer, encoder, tokens, init_text(cfg)))
        else:
            ids.append(add_tokens(tokenizer, encoder, tokens, init_text(cfg)))
            seen.append(tokenizer)
    return ids


def trigger_vectors(components, token: str, num_vectors: int) -> dict[str, torch.Tensor]:
    """The trigger's learned rows of each text encoder, by the family's embedding-file key
    (SD: `emb_params`; SDXL: `clip_l`, `clip_g`)."""
    f = family(components)
    tokens = placeholder_tokens(token, num_vectors)
    pairs = zip(f.embedding_keys, f.text_pairs(components), strict=True)
    return {key: learned_vectors(tok, encoder, tokens) for key, (tok, encoder) in pairs}


def averaged_module(cfg: RunConfig, components) -> torch.nn.Module:
    """What the EMA averages: the embeddings (in the text encoders) when only they learn, else
    the UNet."""
    if not embedding_only(cfg):
        return components.unet
    encoders = family(components).text_encoders(components)
    return encoders[0] if len(encoders) == 1 else torch.nn.ModuleList(encoders)
