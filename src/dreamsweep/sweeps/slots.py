"""`dreamsweep worker [--slots N]` and `dreamsweep enqueue`: `python train.py -m` with the
preset's sweeper swapped for the worker's (or the queue's), N worker processes on one machine.

Each slot is pinned: on a GPU machine to GPUs of its own (CUDA_VISIBLE_DEVICES, the visible
GPUs split evenly), on CPU to one thread per process (OMP_NUM_THREADS=1 unless set), so slots
side by side never fight over a device or over cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dreamsweep.sweeps.settings import PLUGIN

WORKER, ENQUEUE = f"{PLUGIN}.WorkerSweeper", f"{PLUGIN}.EnqueueSweeper"


def train_script() -> Path:
    """train.py of the checkout this command runs in (or the one this package came from)."""
    for candidate in (Path.cwd() / "train.py", Path(__file__).resolve().parents[3] / "train.py"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"no train.py in {Path.cwd()}: start dreamsweep worker/enqueue in the DreamSweep checkout"
    )


def hydra_command(overrides: list[str], sweeper: str) -> list[str]:
    """The train.py multirun that runs `sweeper` with the preset's settings."""
    return [sys.executable, str(train_script()), "-m", *overrides,
            f"hydra.sweeper._target_={sweeper}"]  # fmt: skip


def slot_envs(slots: int, env: dict[str, str], gpus: list[str]) -> list[dict[str, str]]:
    """The environment of each slot: its share of the visible GPUs, or one CPU thread."""
    if not gpus:
        one_thread = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        return [{**one_thread, **env} for _ in range(slots)]  # a value already set wins
    if len(gpus) < slots:
        raise ValueError(f"--slots {slots} needs at least {slots} GPUs; {len(gpus)} are visible")
    share = len(gpus) // slots
    return [
        {**env, "CUDA_VISIBLE_DEVICES": ",".join(gpus[i * share : (i + 1) * share])}
        for i in range(slots)
    ]


def visible_gpus(env: dict[str, str]) -> list[str]:
    """The GPU ids this process may use, as CUDA_VISIBLE_DEVICES names them."""
    import torch

    count = torch.cuda.device_count()
    given = [g for g in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return given[:count] if given else [str(i) for i in range(count)]


def start_workers(overrides: list[str], slots: int) -> int:
    """One worker: this process becomes it. Several: one process each, pinned; the exit code
    is the worst of theirs."""
    command = hydra_command(overrides, WORKER)
    if slots == 1:
        os.execv(command[0], command)
    envs = slot_envs(slots, dict(os.environ), visible_gpus(dict(os.environ)))
    workers = [subprocess.Popen(command, env=env) for env in envs]
    try:
        return max(worker.wait() for worker in workers)
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.terminate()


def enqueue(overrides: list[str]) -> int:
    command = hydra_command(overrides, ENQUEUE)
    os.execv(command[0], command)
    return 1  # not reached
