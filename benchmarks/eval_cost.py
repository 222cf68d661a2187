"""How long evaluation takes: relative to training, and split over 2 CPU processes vs 1.

    python benchmarks/eval_cost.py            # prints ratios measured in this run

Ratios, not absolute times, so the numbers compare across machines. Uses the tiny model.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = [
    "model=tiny",  # the tiny model these ratios were first measured on
    "tracker=disk",
    "train.max_steps=40",
    "eval.schedulers=[ddim]",
    "eval.num_inference_steps=[25]",
    "eval.num_prompts=4",
    "eval.seeds=[0,1,2,3]",
]


def run(out: Path, *extra: str) -> dict:
    cmd = [sys.executable, "train.py", f"hydra.run.dir={out}", *SETTINGS, *extra]
    subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
    result = json.loads((out / "result.json").read_text())
    cells = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    result["cell_seconds"] = statistics.fmean(c["seconds"] for c in cells if c["kind"] == "eval")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = run(Path(tmp) / "one")
        two = run(Path(tmp) / "two", "launcher=multigpu", "launcher.num_processes=2")
    print(
        f"1 process : train {one['seconds']['train']:.1f} s, eval {one['seconds']['eval']:.1f} s"
        f" -> eval/train = {one['seconds']['eval'] / one['seconds']['train']:.2f}"
    )
    print(
        f"per cell  : 1 process {one['cell_seconds']:.2f} s, 2 processes "
        f"{two['cell_seconds']:.2f} s -> ratio {two['cell_seconds'] / one['cell_seconds']:.2f}"
    )


if __name__ == "__main__":
    main()
