"""metrics.jsonl: the run's own record of every logged number, readable without W&B."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dreamsweep.runs import RunPaths, append_metrics, truncate_metrics_after, update_result


class DiskTracker:
    def __init__(self, run_dir: Path, *, resume_step: int | None = 0) -> None:
        """resume_step 0: a fresh run; N: resuming after step N; None: append (re-scoring)."""
        self.paths = RunPaths(run_dir)
        if resume_step:
            truncate_metrics_after(self.paths, resume_step)
        elif resume_step == 0 and self.paths.metrics.exists():
            self.paths.metrics.unlink()  # a fresh start must not mix with a previous attempt

    def log(self, metrics: dict[str, Any], step: int) -> None:
        append_metrics(
            self.paths, {"kind": "train", "step": step, "time": round(time.time(), 3), **metrics}
        )

    def log_eval(self, records: list[dict[str, Any]], grids: dict[str, Path]) -> None:
        for record in records:
            append_metrics(self.paths, {"kind": "eval", "time": round(time.time(), 3), **record})

    def log_val(self, records: list[dict[str, Any]]) -> None:
        for record in records:
            append_metrics(self.paths, {"kind": "val", "time": round(time.time(), 3), **record})

    def summary(self, values: dict[str, Any]) -> None:
        update_result(self.paths, summary=values)

    def finish(self, exit_code: int = 0) -> None:
        pass
