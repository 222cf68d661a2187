"""What a run says on the console: one line when it starts, one when it ends, and none of the
library noise that says nothing about the run (transformers' torchvision fallback notices)."""

from __future__ import annotations

import logging

# The logger that emits each notice, and the notice: transformers' image processors fall back
# to PIL without torchvision, which is fine here.
NOISE = {"transformers.utils.import_utils": ("requires torchvision",)}


class _DropNoise(logging.Filter):
    def __init__(self, texts: tuple[str, ...]) -> None:
        super().__init__()
        self.texts = texts

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in self.texts)


def quiet_library_noise() -> None:
    """Filter the known notices at the loggers that emit them. Imports no library, so it can
    run before diffusers is imported (whose import emits them): the logger made here is the
    one the library gets later."""
    for name, texts in NOISE.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise(texts))


def start_line(run_dir, processes: int, device: str, resume_step: int, threads: int) -> str:
    """Where the run is, on what, with how many CPU threads per process (launch.cpu_threads)."""
    resumed = f", resuming after step {resume_step}" if resume_step else ""
    return (
        f"[dreamsweep] run {run_dir}: {processes} process(es) on {device}, "
        f"{threads} CPU thread(s) each{resumed}"
    )


def end_line(run_dir, result: dict) -> str:
    """State, best cell and objective, and what to run next."""
    best = result.get("best") or {}
    cell = f"best cell step {best.get('step')} {best.get('cell')}" if best else "no scored cell"
    objective = result.get("objective")
    score = f", objective {objective:.4f}" if isinstance(objective, float) else ""
    return f"[dreamsweep] {result.get('state')}: {cell}{score}; next: dreamsweep report {run_dir}"
