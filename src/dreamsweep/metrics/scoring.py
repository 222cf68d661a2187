"""Score one cell's samples against the run's references, with the feature models passed in.

References (embeddings of the instance images, of the base model's class-prompt samples) are
computed once and kept in the shared cache, keyed by the feature model and the image bytes.
"""

from __future__ import annotations

import hashlib
import statistics
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file

from dreamsweep import cache
from dreamsweep.metrics.clip import clip_t
from dreamsweep.metrics.diversity import diversity
from dreamsweep.metrics.drift import pres, prior_drift
from dreamsweep.metrics.features import ClipFeatures, DinoFeatures
from dreamsweep.metrics.memorization import memorization
from dreamsweep.metrics.similarity import mean_cross_cosine
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
        """samples[i] was made from prompt sample_prompt[i]; texts[p] is that prompt for CLIP-T."""
        s, out = set(self.scorers), {}
        groups = sorted(set(sample_prompt))
        rows = {p: [i for i, q in enumerate(sample_prompt) if q == p] for p in groups}
        per_prompt: dict[str, list[float]] = {}
        if s & {"clip_i", "clip_t"}:
            emb = self.clip.images(samples)
            if "clip_i" in s:  # CLIP-I: Ruiz et al. 2022, sec. 4.1
                ref = self.reference_clip
                per_prompt["clip_i"] = [mean_cross_cosine(emb[rows[p]], ref) for p in groups]
            if "clip_t" in s:
                text = self.clip.texts(texts)[torch.tensor(sample_prompt)]
                per_prompt["clip_t"] = [clip_t(emb[rows[p]], text[rows[p]]) for p in groups]
        if s & {"dino", "diversity", "memorization", "prior_drift"}:
            emb = self.dino.images(samples)
            if "dino" in s:  # DINO: the same in DINO ViT space, which separates subjects better
                ref = self.reference_dino
                per_prompt["dino"] = [mean_cross_cosine(emb[rows[p]], ref) for p in groups]
            if "diversity" in s:
                out["diversity"] = diversity([emb[rows[p]] for p in groups])
            if "memorization" in s:
                out.update(memorization(emb, self.reference_dino))
            if "prior_drift" in s and class_samples:
                class_emb = self.dino.images(class_samples)
                out["pres"] = pres(class_emb, self.reference_dino)
                if base_class_dino is not None:
                    out["prior_drift"] = prior_drift(class_emb, base_class_dino)
        if "identity" in s:
            from dreamsweep.metrics.identity import identity_scores

            faces = [self.faces.embed_faces(im) for im in samples]
            out.update(identity_scores(faces, self.reference_faces))
        if "toyworld" in s:
            from dreamsweep.metrics.toyworld import toyworld_scores

            oracle_scores, oracle_per_prompt = toyworld_scores(
                self.oracle, self.reference_oracle, samples, sample_prompt, texts, class_samples
            )
            out.update(oracle_scores)
            per_prompt.update(oracle_per_prompt)
        for key, values in per_prompt.items():
            out[key] = statistics.fmean(values)
            # spread across prompts: a gap smaller than this is noise, not a better setting
            out[f"{key}_sem"] = (
                statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
            )
        return {"scores": out, "per_prompt": per_prompt}
