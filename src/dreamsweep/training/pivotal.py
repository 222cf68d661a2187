"""Pivotal tuning in one run: textual inversion for steps 1..method.ti_steps, then DreamBooth
(the UNet) or LoRA (its adapters) from the learned embeddings until train.max_steps.

One optimiser holds both phases' parameters; a phase switches which of them require grad
(AdamW leaves a parameter without a gradient untouched: no update, no weight decay, no moments),
so the step counter, the LR schedule, the checkpoints and the curves are the run's own. The
phase follows from the step alone, so a resumed run enters the phase of its next step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dreamsweep.config import RunConfig


def is_pivotal(cfg: RunConfig) -> bool:
    return cfg.method.name == "pivotal"


def phase_of(cfg: RunConfig, step: int) -> int:
    """1 (textual inversion) for steps up to method.ti_steps, 2 after."""
    return 1 if step <= cfg.method.ti_steps else 2


@dataclass
class Phases:
    cfg: RunConfig
    # the token embedding matrix of each text encoder (FrozenRows keeps their old rows)
    embeddings: list[torch.nn.Parameter]
    second: list[torch.nn.Parameter]  # what phase 2 trains: the UNet's, or its adapters
    current: int = 0

    def enter(self, step: int) -> int:
        """Make ``step``'s phase the trained one (nothing to do within a phase)."""
        phase = phase_of(self.cfg, step)
        if phase != self.current:
            for p in self.second:
                p.requires_grad_(phase == 2)
            for weight in self.embeddings:
                weight.requires_grad_(phase == 1 or bool(self.cfg.method.train_embeddings))
            self.current = phase
        return phase
