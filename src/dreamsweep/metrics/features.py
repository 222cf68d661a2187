"""The feature models scores are computed in: CLIP (image + text) and DINO (image).

A model is `tiny` (a seeded random model built from config, for tests and model=tiny), a
local folder or a hub id (HF_HUB_OFFLINE honoured). Preprocessing is ours and explicit —
bicubic resize of the shorter side, centre crop, normalise — and recorded with every score,
because reported numbers shift with such details.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The image tower of the tiny random CLIP and DINO models (tests and model=tiny).
TINY_VIT = dict(
    hidden_size=32,
    intermediate_size=37,
    num_hidden_layers=2,
    num_attention_heads=4,
    image_size=32,
    patch_size=8,
)
# Images per forward pass of a feature model: a cell's 64+ samples at 224 px through ViT-L
# at once would hold every activation of them all.
IMAGE_BATCH = 32
REAL_DEFAULTS = {"clip": "openai/clip-vit-large-patch14", "dino": "facebook/dino-vits16"}


class MetricModelError(ValueError):
    """A metric model cannot be loaded; raised at start, before any training."""


@dataclass(frozen=True)
class Preprocessing:
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resize: str = "bicubic shorter side, centre crop"

    def __call__(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self._one(im) for im in images])

    def _one(self, image: Image.Image) -> torch.Tensor:
        image = image.convert("RGB")
        w, h = image.size
        scale = self.image_size / min(w, h)
        image = image.resize(
            (max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))),
            Image.Resampling.BICUBIC,
        )
        left = (image.width - self.image_size) // 2
        top = (image.height - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        pixels = np.asarray(image, dtype=np.float32) / 255.0
        pixels = (pixels - np.array(self.mean, np.float32)) / np.array(self.std, np.float32)
        return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


@dataclass
class ClipFeatures:
    model: object  # transformers CLIPModel
    tokenizer: object
    preprocess: Preprocessing
    source: str
    # The prompts' features, computed once per run: every cell scores the same prompts.
    _text_features: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def describe(self) -> dict:
        return {"model": self.source, "preprocessing": asdict(self.preprocess)}

    @torch.no_grad()
    def images(self, images: list[Image.Image]) -> torch.Tensor:
        def embed(pixels: torch.Tensor) -> torch.Tensor:
            return self.model.get_image_features(pixel_values=pixels).pooler_output

        return _unit(_in_batches(embed, self.preprocess, images))

    @torch.no_grad()
    def texts(self, texts: list[str]) -> torch.Tensor:
        new = sorted(set(texts) - self._text_features.keys())
        if new:
            tokens = self.tokenizer(new, padding=True, truncation=True, return_tensors="pt")
            out = self.model.get_text_features(
                input_ids=tokens.input_ids, attention_mask=tokens.attention_mask
            )
            self._text_features.update(zip(new, _unit(out.pooler_output), strict=True))
        return torch.stack([self._text_features[t] for t in texts])


@dataclass
class DinoFeatures:
    model: object  # transformers ViTModel / Dinov2Model
    preprocess: Preprocessing
    source: str

    def describe(self) -> dict:
        return {"model": self.source, "preprocessing": asdict(self.preprocess)}

    @torch.no_grad()
    def images(self, images: list[Image.Image]) -> torch.Tensor:
        def embed(pixels: torch.Tensor) -> torch.Tensor:  # the CLS token, as in the paper
            return self.model(pixel_values=pixels).last_hidden_state[:, 0]

        return _unit(_in_batches(embed, self.preprocess, images))


def _in_batches(
    embed: Callable[[torch.Tensor], torch.Tensor],
    preprocess: Preprocessing,
    images: list[Image.Image],
) -> torch.Tensor:
    """embed(preprocess(images)), IMAGE_BATCH images at a time."""
    chunks = [images[i : i + IMAGE_BATCH] for i in range(0, len(images), IMAGE_BATCH)]
    return torch.cat([embed(preprocess(chunk)) for chunk in chunks])


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=-1)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def _load(loader, source: str, key: str, **kwargs):
    try:
        return loader(source, local_files_only=_offline() or os.path.isdir(source), **kwargs)
    except (OSError, ValueError) as err:
        raise MetricModelError(
            f"{key}={source} cannot be loaded ({str(err).splitlines()[0]}). Give a local folder "
            f"or a hub id in the Hugging Face cache, or {key}=tiny for a random test model"
        ) from None


def load_clip(source: str, *, seed: int = 0) -> ClipFeatures:
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    if source == "tiny":
        from dreamsweep.models.tiny import load_tiny_tokenizer

        tokenizer = load_tiny_tokenizer()
        config = CLIPConfig(
            text_config=dict(
                vocab_size=len(tokenizer),
                hidden_size=32,
                intermediate_size=37,
                num_hidden_layers=2,
                num_attention_heads=4,
                max_position_embeddings=77,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            ),
            vision_config=TINY_VIT,
            projection_dim=32,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = CLIPModel(config)
    else:
        model = _load(CLIPModel.from_pretrained, source, "metrics.clip.model")
        tokenizer = _load(CLIPTokenizer.from_pretrained, source, "metrics.clip.model")
    size = model.config.vision_config.image_size
    return ClipFeatures(model.eval(), tokenizer, Preprocessing(size, CLIP_MEAN, CLIP_STD), source)


def load_dino(source: str, *, seed: int = 0) -> DinoFeatures:
    from transformers import AutoModel, ViTConfig, ViTModel

    if source == "tiny":
        config = ViTConfig(**TINY_VIT)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = ViTModel(config, add_pooling_layer=False)
    else:
        model = _load(AutoModel.from_pretrained, source, "metrics.dino.model")
    size = model.config.image_size
    return DinoFeatures(model.eval(), Preprocessing(size, IMAGENET_MEAN, IMAGENET_STD), source)
