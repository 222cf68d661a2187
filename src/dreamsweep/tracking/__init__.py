"""Where a run's numbers go: always the run folder, optionally W&B."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from dreamsweep.choices import TRACKERS
from dreamsweep.config import RunConfig
from dreamsweep.registry import load, pick


class Tracker(Protocol):
    def log(self, metrics: dict[str, Any], step: int) -> None: ...

    def log_eval(self, records: list[dict[str, Any]], grids: dict[str, Path]) -> None: ...

    def log_val(self, records: list[dict[str, Any]]) -> None: ...

    def summary(self, values: dict[str, Any]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


def open_trackers(
    cfg: RunConfig, run_dir: Path, *, resume_step: int | None = 0, job_type: str = "train"
) -> list[Tracker]:
    """metrics.jsonl always, and beside it the tracker `tracker` names (TRACKERS). Call on
    the main process only."""
    from dreamsweep.tracking.disk import DiskTracker

    trackers: list[Tracker] = [DiskTracker(run_dir, resume_step=resume_step)]
    beside = pick(TRACKERS, cfg.tracker.name, "tracker")
    if beside is not None:
        trackers.append(load(beside)(cfg, run_dir, job_type=job_type))
    return trackers
