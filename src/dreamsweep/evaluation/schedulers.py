"""Sampling schedulers by short name: the one place that picks a scheduler.

Names map to diffusers class names, so the config can check `eval.schedulers` without
importing diffusers; the class is looked up only when a scheduler is built, from the base
model's own scheduler config (beta schedule and prediction type always match the model).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddpm": ("DDPMScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "pndm": ("PNDMScheduler", {"skip_prk_steps": True}),
    "lms": ("LMSDiscreteScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpmpp_2m": (
        "DPMSolverMultistepScheduler",
        {"algorithm_type": "dpmsolver++", "solver_order": 2},
    ),
    "unipc": ("UniPCMultistepScheduler", {}),
}


def check_scheduler_names(names: Sequence[str], key: str = "eval.schedulers") -> None:
    unknown = [n for n in names if n not in SCHEDULERS]
    if unknown:
        raise ValueError(f"{key}: unknown scheduler(s) {unknown}; known: {sorted(SCHEDULERS)}")


def make_scheduler(name: str, base_config):
    """The sampling scheduler `name`, configured from the model's own scheduler config."""
    import diffusers

    check_scheduler_names([name])
    class_name, extra = SCHEDULERS[name]
    return getattr(diffusers, class_name).from_config(base_config, **extra)
