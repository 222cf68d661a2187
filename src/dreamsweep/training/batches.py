"""What one training step consumes: latents and prompts, drawn with a per-step generator.

Every random choice of a step (which images, which augmentation, timesteps, noise) comes from
a generator seeded by (train.seed, step, micro-batch, rank) instead of a global RNG stream;
what draws from torch's global RNG inside the model (LoRA/LoHa/LoKr dropout) draws from it
seeded by the same tuple (`seed_global_rng`), and adapters are initialised under a seed of
their own (`ADAPTER_SALT`). So a resumed run draws exactly what the uninterrupted run would
have drawn, and two runs with the same seed produce the same weights and scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamsweep.data.dataset import Example
from dreamsweep.models.families import Conditioning, family
from dreamsweep.training.latents import LatentBank

GLOBAL_SALT = 1 << 62  # the global RNG of a micro-batch gets a stream apart from its generator
ADAPTER_SALT = 0x5EED_ADA7  # adapter initialisation: train.seed ^ this


def step_seed(seed: int, step: int, micro: int, rank: int) -> int:
    mixed = (seed * 1_000_003 + step) * 1_009 + micro
    return (mixed * 65_537 + rank) % (2**63)


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step, micro, rank))


def seed_global_rng(seed: int, step: int, micro: int, rank: int) -> None:
    """Dropout inside the model draws from torch's global RNG (all devices): seed it per
    micro-batch, so its draws do not depend on what ran before in the process (a resume,
    a cache that was cold or warm)."""
    torch.manual_seed(step_seed(seed, step, micro, rank) ^ GLOBAL_SALT)


@dataclass
class PromptTable:
    """Unique prompts, their token ids, and their conditioning when the text encoders are
    frozen (without time ids: those are each image's)."""

    prompts: list[str]
    ids: torch.Tensor  # [P, tokenizers, max_length] (the family's tokenizers)
    embeddings: Conditioning | None = None

    def index(self, prompt: str) -> int:
        return self.prompts.index(prompt)


def build_prompt_table(prompts: list[str], components) -> PromptTable:
    unique = sorted(set(prompts))
    return PromptTable(prompts=unique, ids=family(components).tokenize(components, unique))


@torch.no_grad()
def cache_embeddings(table: PromptTable, components, device, dtype) -> None:
    """Encode every prompt once (frozen text encoders: the embeddings never change)."""
    f = family(components)
    table.embeddings = f.encode_ids(f.text_encoders(components), table.ids.to(device))
    table.embeddings = table.embeddings.to(dtype=dtype)


@dataclass
class TrainingData:
    instance: LatentBank
    instance_prompts: torch.Tensor  # prompt-table index per instance image
    prior: LatentBank | None
    prior_prompts: torch.Tensor | None
    table: PromptTable
    held_out: tuple[LatentBank, torch.Tensor] | None = None  # eval.val_dir: latents, token ids
    # eval.val_class_images: latents, token ids (never drawn into a batch: see draw_batch)
    held_out_class: tuple[LatentBank, torch.Tensor] | None = None


def training_data(
    instances: list[Example],
    instance_bank: LatentBank,
    classes: list[Example] | None,
    class_bank: LatentBank | None,
    components,
) -> TrainingData:
    prompts = [e.prompt for e in instances] + [e.prompt for e in classes or []]
    table = build_prompt_table(prompts, components)
    prior_prompts = None
    if classes:
        prior_prompts = torch.tensor([table.index(e.prompt) for e in classes])
    return TrainingData(
        instance=instance_bank,
        instance_prompts=torch.tensor([table.index(e.prompt) for e in instances]),
        prior=class_bank,
        prior_prompts=prior_prompts,
        table=table,
    )


@dataclass
class Batch:
    latents: torch.Tensor  # unscaled VAE latents, instance rows first
    prompt_idx: torch.Tensor
    n_instance: int
    time_ids: torch.Tensor  # [rows, 6]: each drawn image's size and crop (SDXL's conditioning)


def _draw(bank: LatentBank, prompts: torch.Tensor, n: int, g: torch.Generator):
    idx = torch.randint(bank.mean.shape[0], (n,), generator=g)
    variant = torch.randint(bank.num_variants, (n,), generator=g)
    latents = torch.stack(
        [bank.sample(int(i), int(v), g) for i, v in zip(idx, variant, strict=False)]
    )
    return latents, prompts[idx], bank.time_ids_of(idx, variant)


def draw_batch(data: TrainingData, batch_size: int, g: torch.Generator) -> Batch:
    """batch_size instance images, plus batch_size class images under prior preservation."""
    latents, prompt_idx, time_ids = _draw(data.instance, data.instance_prompts, batch_size, g)
    if data.prior is not None:
        class_latents, class_idx, class_ids = _draw(data.prior, data.prior_prompts, batch_size, g)
        latents = torch.cat([latents, class_latents])
        prompt_idx = torch.cat([prompt_idx, class_idx])
        time_ids = torch.cat([time_ids, class_ids])
    return Batch(latents, prompt_idx, n_instance=batch_size, time_ids=time_ids)
