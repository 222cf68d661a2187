"""The oracle: a small CNN that says which shape, colour and background a picture shows.

It turns "did DreamBooth learn the subject / keep the prompt" into numbers: the shape head has
a sixth class for the subject, and the pooled 128-d feature is an embedding for similarity.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

from dreamsweep.tensor_files import save_tensors
from dreamsweep.toyworld import ORACLE_DIR
from dreamsweep.toyworld.world import BACKGROUNDS, COLOURS, SHAPES, to_tensor

SHAPE_CLASSES = (*SHAPES, "subject")
COLOUR_CLASSES = tuple(COLOURS)
BACKGROUND_CLASSES = tuple(BACKGROUNDS)
CHANNELS = (32, 64, 96, 128)


class Oracle(nn.Module):
    """4 conv stages (3->32->64->96->128, BatchNorm, ReLU, 2x down) + global pool + 3 heads."""

    def __init__(self, channels: tuple[int, ...] = CHANNELS) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for i, out in enumerate(channels):
            stride = 1 if i == 0 else 2
            layers += [nn.Conv2d(width, out, 3, stride, 1), nn.BatchNorm2d(out), nn.ReLU()]
            width = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.shape = nn.Linear(width, len(SHAPE_CLASSES))
        self.colour = nn.Linear(width, len(COLOUR_CLASSES))
        self.background = nn.Linear(width, len(BACKGROUND_CLASSES))

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        embedding = self.features(pixels)
        return {
            "embedding": embedding,
            "shape": self.shape(embedding),
            "colour": self.colour(embedding),
            "background": self.background(embedding),
        }


@dataclass(frozen=True)
class OracleScores:
    """What the oracle sees in a batch of N pictures (index i = picture i)."""

    shape: list[str]  # SHAPE_CLASSES names; "subject" = the DreamBooth subject
    colour: list[str]
    background: list[str]
    subject_prob: torch.Tensor  # [N] softmax probability of the "subject" shape class
    confidence: torch.Tensor  # [N] lowest of the three heads' top probabilities
    embedding: torch.Tensor  # [N, 128] pooled feature, L2-normalised

    def __len__(self) -> int:
        return len(self.shape)

    @property
    def is_subject(self) -> torch.Tensor:
        return torch.tensor([s == "subject" for s in self.shape])


def save_oracle(oracle: Oracle, folder: Path, metrics: dict | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in oracle.state_dict().items()}
    save_tensors(state, folder / "oracle.safetensors")
    config = {
        "channels": list(CHANNELS),
        "shapes": list(SHAPE_CLASSES),
        "colours": list(COLOUR_CLASSES),
        "backgrounds": list(BACKGROUND_CLASSES),
        "input": "32x32 RGB scaled to [-1, 1]",
        "held_out_metrics": metrics or {},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=1))


def load_oracle(folder: Path = ORACLE_DIR) -> Oracle:
    """The shipped oracle by default; eval mode, CPU, fp32."""
    config = json.loads((Path(folder) / "config.json").read_text())
    oracle = Oracle(tuple(config["channels"]))
    oracle.load_state_dict(load_file(str(Path(folder) / "oracle.safetensors")))
    return oracle.eval()


def images_to_pixels(images: list[Image.Image]) -> torch.Tensor:
    """PIL images (any size, resized to 32x32) -> [N, 3, 32, 32] in [-1, 1]."""
    return to_tensor([im.convert("RGB").resize((32, 32), Image.BILINEAR) for im in images])


@torch.no_grad()
def score_pixels(oracle: Oracle, pixels: torch.Tensor, batch: int = 256) -> OracleScores:
    """Classify and embed a [N, 3, H, W] tensor in [-1, 1] (a pipeline's output * 2 - 1)."""
    if pixels.shape[-1] != 32 or pixels.shape[-2] != 32:
        pixels = torch.nn.functional.interpolate(pixels, size=(32, 32), mode="bilinear")
    parts = [oracle.eval()(pixels[i : i + batch].float()) for i in range(0, len(pixels), batch)]
    out = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    probs = {k: out[k].softmax(dim=1) for k in ("shape", "colour", "background")}
    top = torch.stack([p.max(dim=1).values for p in probs.values()], dim=1)
    return OracleScores(
        shape=[SHAPE_CLASSES[i] for i in probs["shape"].argmax(1).tolist()],
        colour=[COLOUR_CLASSES[i] for i in probs["colour"].argmax(1).tolist()],
        background=[BACKGROUND_CLASSES[i] for i in probs["background"].argmax(1).tolist()],
        subject_prob=probs["shape"][:, SHAPE_CLASSES.index("subject")],
        confidence=top.min(dim=1).values,
        embedding=torch.nn.functional.normalize(out["embedding"], dim=1),
    )


def score_images(oracle: Oracle, images: list[Image.Image]) -> OracleScores:
    """Classify and embed PIL images (what StableDiffusionPipeline returns)."""
    return score_pixels(oracle, images_to_pixels(images))


def reference_embedding(oracle: Oracle, instances: list[Image.Image]) -> torch.Tensor:
    """The instance images' mean embedding, normalised: what subject similarity compares to."""
    mean = score_images(oracle, instances).embedding.mean(dim=0)
    return torch.nn.functional.normalize(mean, dim=0)


def subject_similarity(oracle: Oracle, images: list[Image.Image], instances: list) -> torch.Tensor:
    """[N] cosine similarity of each picture's embedding to the instance images' mean
    embedding: the toy world's DINO score."""
    return score_images(oracle, images).embedding @ reference_embedding(oracle, instances)
