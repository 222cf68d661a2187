"""Score one cell's samples against the run's references: the chosen scorers of the registry
(metrics/registry.py) run on the feature models they name (FEATURES), loaded once per run.

References (embeddings of the instance images, of the base model's class-prompt samples) are
computed once and kept in the shared cache, keyed by the feature model and the image bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from dreamsweep import cache
from dreamsweep.config import RunConfig
from dreamsweep.metrics.aggregate import summarise
from dreamsweep.metrics.registry import SCORERS, CellImages, Feature, Scored
from dreamsweep.registry import load, pick
from dreamsweep.tensor_files import save_tensors


def cached_embeddings(feature_model, images: list[Path], cache_root: Path) -> torch.Tensor:
    """Embeddings of image files, computed once per (feature model, images)."""
    spec = {
        "features": feature_model.describe(),
        "images": [hashlib.sha256(p.read_bytes()).hexdigest() for p in images],
    }
    entry = cache.entry_dir(cache_root, "features", spec)
    file = entry / "embeddings.safetensors"
    with cache.locked(entry) if not file.exists() else nullcontext():
        if not file.exists():
            embeddings = feature_model.images([Image.open(p).convert("RGB") for p in images])
            cache.write_spec(entry, spec)
            save_tensors({"embeddings": embeddings.contiguous()}, file)
    return load_file(str(file))["embeddings"]


def _clip(cfg: RunConfig, references: list[Path], cache_root: Path) -> Feature:
    from dreamsweep.metrics.features import load_clip

    model = load_clip(feature_source(cfg, cfg.metrics.clip.model, "clip"))
    return Feature(model, cached_embeddings(model, references, cache_root), model.describe())


def _dino(cfg: RunConfig, references: list[Path], cache_root: Path) -> Feature:
    from dreamsweep.metrics.features import load_dino

    model = load_dino(feature_source(cfg, cfg.metrics.dino.model, "dino"))
    return Feature(model, cached_embeddings(model, references, cache_root), model.describe())


def _faces(cfg: RunConfig, references: list[Path], cache_root: Path) -> Feature:
    from dreamsweep.metrics.identity import DlibFaceEmbedder, reference_faces

    model = DlibFaceEmbedder()
    images = [Image.open(p).convert("RGB") for p in references]
    return Feature(model, reference_faces(model, images), model.description())


def _oracle(cfg: RunConfig, references: list[Path], cache_root: Path) -> Feature:
    from dreamsweep.metrics.toyworld import reference_embedding
    from dreamsweep.toyworld.oracle import load_oracle

    model = load_oracle()
    images = [Image.open(p).convert("RGB") for p in references]
    description = "dreamsweep toy-world oracle (dreamsweep/assets/toyworld/oracle)"
    return Feature(model, reference_embedding(model, images), description)


# The feature models scorers name (metrics/registry.py), loaded once per run, in this order.
FEATURES: dict[str, Callable[[RunConfig, list[Path], Path], Feature]] = {
    "clip": _clip,
    "dino": _dino,
    "faces": _faces,
    "oracle": _oracle,
}


def feature_source(cfg: RunConfig, value: str, kind: str) -> str:
    """metrics.<kind>.model: auto is a tiny random model for a built-in model, else the paper's."""
    from dreamsweep.metrics.features import REAL_DEFAULTS

    if value != "auto":
        return value
    from dreamsweep.config_checks import BUILT_IN_MODELS

    return "tiny" if cfg.model.name in BUILT_IN_MODELS else REAL_DEFAULTS[kind]


def load_scorer(cfg: RunConfig, cache_root: Path) -> Scorer:
    """The feature models the chosen scorers need (a missing one fails here, before
    training), with their references: the instance images, embedded once (shared cache)."""
    from dreamsweep.data.dataset import instance_examples

    chosen = [pick(SCORERS, name, "metrics.scorers") for name in cfg.metrics.scorers]
    needed = {f for spec in chosen for f in spec.features}
    for feature in sorted(needed):  # a scorer naming a model FEATURES lacks fails now
        pick(FEATURES, feature, "a scorer's features (metrics/registry.py)")
    references = [e.image for e in instance_examples(cfg)]
    features = {f: make(cfg, references, cache_root) for f, make in FEATURES.items() if f in needed}
    return Scorer(list(cfg.metrics.scorers), features)


@dataclass
class Scorer:
    """The run's chosen scorers (metrics/registry.py) and their feature models; `score` turns
    one cell's samples into numbers."""

    scorers: list[str]
    features: dict[str, Feature]

    def describe(self) -> dict:
        return {name: f.description for name, f in self.features.items()}

    def score(
        self,
        samples: list[Image.Image],
        sample_prompt: list[int],
        texts: list[str],
        class_samples: list[Image.Image],
        base_class_dino: torch.Tensor | None,
    ) -> dict:
        """samples[i] was made from prompt sample_prompt[i]; texts[p] is that prompt for CLIP-T.

        Returns the cell's `scores`, each prompt's mean (`per_prompt`) and `per_sample`: every
        per-sample score over the units (the samples, then the class samples; None where a
        score does not apply), from which the cell's scores are made (metrics/aggregate.py)
        and on which the report's paired statistics resample (verdicts.py). Scorers run in
        the registry's order."""
        n, m = len(samples), len(class_samples)
        cell = CellImages(
            samples, sample_prompt, texts, class_samples, base_class_dino, self.features
        )
        unit_prompt = [f"p{p}" for p in sample_prompt] + ["class"] * m
        per_sample: dict[str, list[float | None]] = {}
        out: dict[str, float | None] = {}
        for name, spec in SCORERS.items():
            if name not in self.scorers:
                continue
            scored: Scored = load(spec.score)(cell)
            for key in {**scored.samples, **scored.class_samples}:
                per_sample[key] = _values(scored.samples.get(key), n) + _values(
                    scored.class_samples.get(key), m
                )
            out.update(scored.cell)
        scores, per_prompt = summarise(per_sample, unit_prompt, n)
        return {"scores": {**out, **scores}, "per_prompt": per_prompt, "per_sample": per_sample}


def _values(values: list | torch.Tensor | None, count: int) -> list:
    """A score's values as a list; None for each unit when it has none there."""
    if values is None:
        return [None] * count
    return values.tolist() if isinstance(values, torch.Tensor) else list(values)
