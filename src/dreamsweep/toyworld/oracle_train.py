"""Train and measure the oracle: clean-ish world pictures first, then off-palette robustness.

Generated pictures are blurry, noisy and off-palette, so both phases use degraded inputs;
the second phase paints half the backgrounds a random colour (background label ignored).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dreamsweep.toyworld.augment import degrade, draw_varied, mixed_scene
from dreamsweep.toyworld.oracle import BACKGROUND_CLASSES, COLOUR_CLASSES, SHAPE_CLASSES, Oracle
from dreamsweep.toyworld.world import to_tensor

IGNORE = -100


@dataclass
class LabelledBatch:
    pixels: torch.Tensor
    shape: torch.Tensor
    colour: torch.Tensor
    background: torch.Tensor  # IGNORE where the background is off-palette


def labelled_batch(
    rng: np.random.Generator, n: int, p_off_bg: float, p_subject: float = 0.2, clean: bool = False
) -> LabelledBatch:
    """Degraded pictures with their true labels (from the scene, never from a model)."""
    images, shapes, colours, bgs = [], [], [], []
    for _ in range(n):
        scene = mixed_scene(rng, p_subject)
        off_bg = rng.random() < p_off_bg
        image = draw_varied(rng, scene, p_off_bg=1.0 if off_bg else 0.0)
        images.append(image if clean else degrade(rng, image))
        shapes.append(SHAPE_CLASSES.index(scene.shape))
        colours.append(COLOUR_CLASSES.index(scene.colour))
        bgs.append(IGNORE if off_bg else BACKGROUND_CLASSES.index(scene.background))
    return LabelledBatch(to_tensor(images), *(torch.tensor(x) for x in (shapes, colours, bgs)))


def _phase(oracle: Oracle, steps: int, p_off_bg: float, lr: float, seed: int, name: str) -> None:
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(oracle.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    ce = nn.CrossEntropyLoss(ignore_index=IGNORE)
    oracle.train()
    for _ in tqdm(range(steps), desc=name, mininterval=15):
        b = labelled_batch(rng, 64, p_off_bg)
        out = oracle(b.pixels)
        loss = ce(out["shape"], b.shape) + ce(out["colour"], b.colour)
        if (b.background != IGNORE).any():
            loss = loss + ce(out["background"], b.background)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()


def train_oracle(steps: int = 2500, robust_steps: int = 1500, seed: int = 0) -> Oracle:
    torch.manual_seed(seed)
    oracle = Oracle()
    _phase(oracle, steps, p_off_bg=0.0, lr=3e-3, seed=seed, name="oracle")
    _phase(oracle, robust_steps, p_off_bg=0.5, lr=1e-3, seed=seed + 1, name="oracle robust")
    return oracle.eval()


@torch.no_grad()
def measure(oracle: Oracle, n: int = 2000, seed: int = 999) -> dict[str, float]:
    """Held-out accuracies on fresh pictures (a seed never used in training)."""
    rng = np.random.default_rng(seed)
    oracle.eval()
    plain = labelled_batch(rng, n, p_off_bg=0.0, p_subject=0.2)
    off = labelled_batch(rng, n, p_off_bg=1.0, p_subject=0.2)
    subject = SHAPE_CLASSES.index("subject")
    result = {}
    for name, b in (("", plain), ("off_palette_", off)):
        out = oracle(b.pixels)
        shape = out["shape"].argmax(1)
        result[name + "shape"] = (shape == b.shape).float().mean().item()
        result[name + "colour"] = (out["colour"].argmax(1) == b.colour).float().mean().item()
        is_subject = b.shape == subject
        result[name + "subject_recall"] = (shape[is_subject] == subject).float().mean().item()
        result[name + "subject_false_pos"] = (shape[~is_subject] == subject).float().mean().item()
    out = oracle(plain.pixels)
    result["background"] = (out["background"].argmax(1) == plain.background).float().mean().item()
    return {k: round(v, 4) for k, v in result.items()}
