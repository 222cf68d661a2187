"""The demo grid folded (DESIGN.md) vs the same cells as a naive grid, and the report's cost.

    python benchmarks/demo_grid.py            # about 5 minutes on 2 CPU cores

Folding makes steps and schedulers cells of one training run; the naive grid
(hydra.sweeper.fold=false) trains one run per cell setting. Each grid starts with an empty
cache, so both pay for the class images once. Ratios are measured in this run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def grid(out: Path, *extra: str) -> tuple[float, int, int]:
    """Wall time, training runs and trained cells (step > 0) of `train.py -m +sweep=demo`."""
    env = {**os.environ, "DREAMSWEEP_CACHE_DIR": str(out / "cache")}
    cmd = [sys.executable, "train.py", "-m", "+sweep=demo", f"hydra.sweep.dir={out / 'sweep'}"]
    started = time.perf_counter()
    proc = subprocess.run(
        [*cmd, *extra], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    runs = int(re.search(r"grid: (\d+) training run", proc.stdout + proc.stderr).group(1))
    cells = sum(
        sum(
            r["kind"] == "eval" and r["step"] > 0
            for r in map(json.loads, p.read_text().splitlines())
        )
        for p in (out / "sweep").glob("*/metrics.jsonl")
    )
    return seconds, runs, cells


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folded = grid(Path(tmp) / "folded")
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "dreamsweep.report",
                str(Path(tmp) / "folded" / "sweep"),
                "--out",
                str(Path(tmp) / "report"),
            ],
            check=True,
            capture_output=True,
        )
        report = time.perf_counter() - started
        naive = grid(Path(tmp) / "naive", "hydra.sweeper.fold=false")
    for name, (seconds, runs, cells) in (("folded", folded), ("naive", naive)):
        print(f"{name:7s}: {runs:2d} training runs, {cells:3d} trained cells, {seconds:6.1f} s")
    print(f"naive / folded wall time = {naive[0] / folded[0]:.2f}")
    print(f"report: {report:.1f} s = {report / folded[0]:.2f} x the folded sweep")


if __name__ == "__main__":
    main()
