"""Reading the sweep folders a benchmark made: runs, their settings, cells and outcomes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from dreamsweep.runs import grid_file


@dataclass
class RunRecord:
    folder: Path
    settings: dict[str, Any]  # the swept keys of config.yaml
    result: dict[str, Any]
    cells: list[dict[str, Any]]  # metrics.jsonl eval records


SWEPT = ("optim.lr", "prior.enabled", "train.text_encoder")


def read_runs(sweep_dir: Path) -> list[RunRecord]:
    """Every run folder of a sweep (those with a config.yaml)."""
    runs = []
    for config in sorted(sweep_dir.glob("*/config.yaml")):
        folder = config.parent
        cfg = yaml.safe_load(config.read_text())
        metrics = folder / "metrics.jsonl"
        records = [json.loads(line) for line in metrics.read_text().splitlines()] if (
            metrics.exists()
        ) else []  # fmt: skip
        result = folder / "result.json"
        runs.append(
            RunRecord(
                folder,
                {key: _get(cfg, key) for key in SWEPT},
                json.loads(result.read_text()) if result.exists() else {},
                [r for r in records if r.get("kind") == "eval"],
            )
        )
    return runs


def _get(cfg: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def count_cells(runs: list[RunRecord]) -> int:
    return sum(len(r.cells) for r in runs)


def sum_steps(runs: list[RunRecord]) -> int:
    return sum(r.result.get("final_step") or 0 for r in runs)


def state_counts(runs: list[RunRecord]) -> str:
    states = [r.result.get("state", "missing") for r in runs]
    return "/".join(f"{states.count(s)} {s}" for s in sorted(set(states)))


def compare_cells(folded: list[RunRecord], naive: list[RunRecord]) -> tuple[int, int, float]:
    """(cells compared, cells with identical scores, largest score difference)."""

    def key(run: RunRecord, cell: dict[str, Any]) -> tuple:
        return (tuple(sorted(run.settings.items())), cell["step"], cell["cell"])

    reference = {key(run, c): c for run in folded for c in run.cells}
    compared = equal = 0
    worst = 0.0
    for run in naive:
        for cell in run.cells:
            twin = reference.get(key(run, cell))
            if twin is None:
                continue
            scores = [k for k in cell if k.startswith("eval/") or k == "objective"]
            gaps = [abs((cell[k] or 0.0) - (twin.get(k) or 0.0)) for k in scores]
            compared += 1
            equal += all(cell[k] == twin.get(k) for k in scores)
            worst = max([worst, *gaps])
    return compared, equal, worst


def best_of_study(sweep_dir: Path) -> float | None:
    summary = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    best = summary.get("best") or []
    return best[0]["values"][0] if best else None


def images_sampled(sweep_dir: Path) -> int:
    """Sample images written by every evaluated cell (contact sheets not counted)."""
    return sum(1 for f in sweep_dir.glob("*/eval/*/*/*.png") if f != grid_file(f.parent))


def winner(runs: list[RunRecord]) -> tuple | None:
    """(settings, step, cell) of the best trained cell, by DreamSweep's tie rule."""
    scored = [
        (-c["objective"], c["step"], i, c["cell"], run)
        for i, run in enumerate(runs)
        for c in run.cells
        if c["step"] > 0 and c.get("objective") is not None
    ]
    if not scored:
        return None
    _, step, _, cell, run = min(scored, key=lambda t: t[:4])
    return (tuple(sorted(run.settings.items())), step, cell)


def winner_objective(runs: list[RunRecord]) -> float | None:
    """The best trained cell's objective."""
    values = [c["objective"] for run in runs for c in run.cells
              if c["step"] > 0 and c.get("objective") is not None]  # fmt: skip
    return max(values, default=None)


def run_seconds(sweep_dir: Path) -> list[float]:
    """How long each run of a sweep ran: from its config.yaml (written as it starts) to the
    last line of its metrics.jsonl (its last evaluation, or where the pruner stopped it)."""
    return [
        (config.parent / "metrics.jsonl").stat().st_mtime - config.stat().st_mtime
        for config in sorted(sweep_dir.glob("*/config.yaml"))
        if (config.parent / "metrics.jsonl").exists()
    ]
