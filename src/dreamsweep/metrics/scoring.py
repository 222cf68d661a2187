"""Score one cell's samples against the run's references, with the feature models passed in.

References (embeddings of the instance images, of the base model's class-prompt samples) are
computed once and kept in the shared cache, keyed by the feature model and the image bytes.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from dreamsweep import cache
from dreamsweep.metrics.aggregate import summarise
from dreamsweep.metrics.clip import clip_t_per_sample
from dreamsweep.metrics.diversity import diversity
from dreamsweep.metrics.drift import prior_drift_per_sample
from dreamsweep.metrics.features import ClipFeatures, DinoFeatures
from dreamsweep.metrics.memorization import nearest_cosine
from dreamsweep.metrics.similarity import cross_cosine
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


@dataclass
class Scorer:
    """Feature models and references; `score` turns one cell's samples into numbers."""

    scorers: list[str]
    clip: ClipFeatures | None
    dino: DinoFeatures | None
    reference_clip: torch.Tensor | None = None  # instance images
    reference_dino: torch.Tensor | None = None
    faces: object | None = None  # identity.FaceEmbedder
    reference_faces: list = field(default_factory=list)
    oracle: torch.nn.Module | None = None  # the toy world's classifier (metrics=toyworld)
    reference_oracle: torch.Tensor | None = None  # its mean embedding of the instance images

    def describe(self) -> dict:
        models = {"clip": self.clip, "dino": self.dino}
        out = {k: m.describe() for k, m in models.items() if m is not None}
        if self.faces is not None:
            out["faces"] = self.faces.description()
        if self.oracle is not None:
            out["oracle"] = "dreamsweep toy-world oracle (dreamsweep/assets/toyworld/oracle)"
        return out

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
        and on which the report's paired statistics resample (verdicts.py)."""
        s, n, m = set(self.scorers), len(samples), len(class_samples)
        unit_prompt = [f"p{p}" for p in sample_prompt] + ["class"] * m
        per_sample: dict[str, list[float | None]] = {}

        def put(key: str, values: list | torch.Tensor, of_class: bool = False) -> None:
            values = values.tolist() if isinstance(values, torch.Tensor) else list(values)
            none_n, none_m = [None] * n, [None] * m
            per_sample[key] = none_n + values if of_class else values + none_m

        out: dict[str, float | None] = {}
        if s & {"clip_i", "clip_t"}:
            emb = self.clip.images(samples)
            if "clip_i" in s:  # CLIP-I: Ruiz et al. 2022, sec. 4.1 (mean over all pairs)
                put("clip_i", cross_cosine(emb, self.reference_clip).mean(dim=1))
            if "clip_t" in s:
                put("clip_t", clip_t_per_sample(emb, self.clip.texts(texts)[sample_prompt]))
        if s & {"dino", "diversity", "memorization", "prior_drift"}:
            emb = self.dino.images(samples)
            if "dino" in s:  # DINO: the same in DINO ViT space, which separates subjects better
                put("dino", cross_cosine(emb, self.reference_dino).mean(dim=1))
            if "diversity" in s:
                groups = sorted(set(sample_prompt))
                rows = [[i for i, q in enumerate(sample_prompt) if q == p] for p in groups]
                out["diversity"] = diversity([emb[r] for r in rows])
            if "memorization" in s:
                nearest = nearest_cosine(emb, self.reference_dino)
                put("memorization", nearest)
                out["memorization_max"] = nearest.max().item()
            if "prior_drift" in s and class_samples:
                class_emb = self.dino.images(class_samples)
                put("pres", cross_cosine(class_emb, self.reference_dino).mean(dim=1), True)
                if base_class_dino is not None:
                    put("prior_drift", prior_drift_per_sample(class_emb, base_class_dino), True)
        if "identity" in s:
            from dreamsweep.metrics.identity import identity_per_sample

            faces = [self.faces.embed_faces(im) for im in samples]
            for key, values in identity_per_sample(faces, self.reference_faces).items():
                put(key, values)
        if "toyworld" in s:
            from dreamsweep.metrics.toyworld import toyworld_per_sample

            seen, seen_class, cell_level = toyworld_per_sample(
                self.oracle, self.reference_oracle, samples, sample_prompt, texts, class_samples
            )
            for key, values in seen.items():
                put(key, values)
            for key, values in seen_class.items():
                if key in per_sample:  # scored on both (damage): the class part fills in
                    per_sample[key] = per_sample[key][:n] + list(values)
                else:
                    put(key, values, of_class=True)
            out.update(cell_level)
        scores, per_prompt = summarise(per_sample, unit_prompt, n)
        return {"scores": {**out, **scores}, "per_prompt": per_prompt, "per_sample": per_sample}
