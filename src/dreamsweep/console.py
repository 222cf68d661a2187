"""What a run says on the console: one line when it starts, one when it ends, and none of the
library noise that says nothing about the run (transformers' torchvision fallback notices)."""

from __future__ import annotations

import logging

NOISE = ("requires torchvision",)  # transformers: image processors fall back to PIL, fine here


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in NOISE)


def quiet_library_noise() -> None:
    """Filter the known notices on transformers' handler; call before diffusers is imported."""
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers")  # makes the library's handler
    for handler in logging.getLogger("transformers").handlers:
        if not any(isinstance(f, _DropNoise) for f in handler.filters):
            handler.addFilter(_DropNoise())


def start_line(run_dir, processes: int, device: str, resume_step: int) -> str:
    resumed = f", resuming after step {resume_step}" if resume_step else ""
    return f"[dreamsweep] run {run_dir}: {processes} process(es) on {device}{resumed}"


def end_line(run_dir, result: dict) -> str:
    """State, best cell and objective, and what to run next."""
    best = result.get("best") or {}
    cell = f"best cell step {best.get('step')} {best.get('cell')}" if best else "no scored cell"
    objective = result.get("objective")
    score = f", objective {objective:.4f}" if isinstance(objective, float) else ""
    return f"[dreamsweep] {result.get('state')}: {cell}{score}; next: dreamsweep report {run_dir}"
