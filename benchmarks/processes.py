"""Running the two sides of a comparison: train.py processes, side.py workers, the machine.

A process's wall time and peak RSS come from wait4 (its waited-for children included); a
side.py worker is set up once and then timed one unit at a time, interleaved with the other
side so that a drifting load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIDE = HERE / "side.py"


@dataclass
class Context:
    """What every section needs: the settings, a scratch folder, the environment."""

    args: argparse.Namespace
    tmp: Path
    tiny_model: Path  # the tiny model saved as a diffusers folder (for the plain baselines)
    logs: Path

    @property
    def quick(self) -> bool:
        return self.args.quick

    def env(self, cache: Path | None = None) -> dict[str, str]:
        """Children run at the benchmark's thread count, with a cache of the benchmark's own."""
        env = {**os.environ, "DREAMSWEEP_CACHE_DIR": str(cache or self.tmp / "cache")}
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        env["WANDB_MODE"] = "disabled"  # every run here uses tracker=disk; belt and braces
        return env

    def log_file(self, name: str) -> IO[str]:
        return open(self.logs / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log", "w")  # noqa: SIM115


def device_args(args: argparse.Namespace) -> list[str]:
    return [
        f"--device={args.device}",
        f"--precision={args.precision}",
        f"--resolution={args.resolution}",
    ]


def run_overrides(args: argparse.Namespace) -> list[str]:
    """train.py overrides for the device settings (the tiny model at the chosen resolution)."""
    return [
        f"data.resolution={args.resolution}",
        f"model.sample_size={args.resolution}",
        f"launcher.mixed_precision={args.precision}",
    ]


@dataclass
class Finished:
    seconds: float
    peak_mb: float  # the largest RSS of any process of the tree (Linux wait4 semantics)
    returncode: int


def run_process(cmd: list[str], env: dict[str, str], log: IO[str]) -> Finished:
    """Run to the end; wall time and peak RSS from wait4, which covers the process's waited-for
    children too (train.py's worker, a sweep's runs)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Finished(seconds, usage.ru_maxrss / 1024, proc.returncode)


def must_finish(cmd: list[str], env: dict[str, str], log: IO[str]) -> Finished:
    done = run_process(cmd, env, log)
    if done.returncode != 0:
        log.flush()
        tail = "\n".join(Path(log.name).read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"exit code {done.returncode}: {' '.join(cmd)}\n{tail}")
    return done


class Side:
    """A running benchmarks/side.py: set up once, then one unit of work per `run()`."""

    def __init__(self, ctx: Context, kind: str, *extra: str) -> None:
        self.name = " ".join([kind, *extra])
        self.log = ctx.log_file(self.name)
        cmd = [sys.executable, str(SIDE), kind, *extra, *device_args(ctx.args)]
        cmd += [f"--model-dir={ctx.tiny_model}"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=ctx.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True,
        )  # fmt: skip

    def answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"side '{self.name}' ended early; see {self.log.name}")
        return json.loads(line)

    def run(self) -> dict[str, Any]:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> float:
        """Stop the side; its peak memory (MiB)."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        peak = self.answer()["peak_mb"]
        self.proc.wait()
        return peak


@dataclass
class Paired:
    ours: list[float]
    baseline: list[float]
    ours_info: dict[str, Any]
    baseline_info: dict[str, Any]
    ours_peak_mb: float
    baseline_peak_mb: float
    values: tuple[Any, Any]  # what each side's last unit returned

    @property
    def medians(self) -> tuple[float, float]:
        return statistics.median(self.ours), statistics.median(self.baseline)


def interleaved(ours: Side, base: Side, warmup: int, repeats: int) -> Paired:
    """Both sides set up side by side, then `warmup` untimed units each, then `repeats` timed
    ones in the order A B, B A, A B, ...: a drifting load hits both sides alike."""
    try:
        infos = ours.answer(), base.answer()
        for _ in range(warmup):
            ours.run()
            base.run()
        times: dict[Side, list[float]] = {ours: [], base: []}
        last: dict[Side, Any] = {}
        for i in range(repeats):
            for side in (ours, base) if i % 2 == 0 else (base, ours):
                answer = side.run()
                times[side].append(answer["seconds"])
                last[side] = answer.get("value")
        peaks = ours.close(), base.close()
    finally:
        for side in (ours, base):
            if side.proc.poll() is None:
                side.proc.kill()
                side.proc.wait()
            side.log.close()
    return Paired(times[ours], times[base], *infos, *peaks, (last.get(ours), last.get(base)))


class LoadSampler:
    """The 1-minute load average every few seconds: other work on the machine shows here."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), daemon=True)

    def _loop(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    @contextmanager
    def running(self) -> Iterator[LoadSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": min(s), "median": statistics.median(s), "max": max(s)}


def machine(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1 (set for children)"),
        "torch": version("torch"),
        "diffusers": version("diffusers"),
        "device": args.device,
        "precision": args.precision,
        "resolution": args.resolution,
    }
