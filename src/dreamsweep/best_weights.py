"""Keep the weights of a run's best cell so far in `<run>/best/`, as a loadable pipeline.

At each evaluation, when a trained cell beats the run's best so far, the weights that cell
scored (EMA or raw) are saved with that cell's scheduler as the pipeline's scheduler, plus
`cell.json` (the cell's metrics line). The folder is replaced atomically: the previous best
stays until the new one is complete. So the run folder always holds its best cell's weights,
which is what best.json, the report and `dreamsweep export` point at.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsweep.atomic import recover_swap
from dreamsweep.metrics.objective import best_cell
from dreamsweep.runs import RunPaths, read_json, read_metrics

CELL_FILE = "cell.json"


@dataclass
class BestKeeper:
    cfg: Any  # RunConfig: how the run's method saves weights (pipeline or LoRA)
    folder: Path
    settings: dict[str, Any]
    objective: float | None = None  # of the cell whose weights are in `folder`

    @classmethod
    def for_run(cls, cfg, paths: RunPaths, settings: dict[str, Any]) -> BestKeeper:
        """The keeper of a (possibly resumed) run: the bar is its best cell scored so far."""
        recover_swap(paths.root / "best")  # a kill inside the swap of an earlier attempt
        return cls(cfg, paths.root / "best", settings, resume_bar(paths))

    def offer(
        self,
        records: list[dict[str, Any]],
        weights: dict[str, Callable[[], AbstractContextManager]],
    ) -> dict[str, Any] | None:
        """Save the weights of the best of ``records`` if it beats the best so far (a tie keeps
        the earlier cell: `metrics.objective.rank_key`); return its record when saved."""
        top = best_cell(records)
        if top is None or (self.objective is not None and top["objective"] <= self.objective):
            return None
        self.save(top, weights)
        return top

    def save(
        self, top: dict[str, Any], weights: dict[str, Callable[[], AbstractContextManager]]
    ) -> None:
        """Save the weights ``top`` (a cell's metrics line) scored, as its pipeline."""
        from dreamsweep.evaluation.schedulers import make_scheduler
        from dreamsweep.models.saving import save_weights

        with weights[top["weights"]]() as components:
            scheduler = make_scheduler(top["scheduler"], components.noise_scheduler.config)
            save_weights(
                self.cfg,
                components,
                self.folder,
                {**self.settings, "dreamsweep_cell": top},
                scheduler=scheduler,
                extra={CELL_FILE: json.dumps(top, indent=2, sort_keys=True) + "\n"},
            )
        self.objective = top["objective"]


def resume_bar(paths: RunPaths) -> float | None:
    """What a resumed run's cell must beat to replace `best/`: the best of the cell `best/`
    holds, the best cell in metrics.jsonl (cut back to the checkpoint, so it may miss the
    kept one) and the best that result.json recorded. None when `best/` holds nothing."""
    kept = kept_cell(paths.root)
    if kept is None:
        return None
    best = best_cell([r for r in read_metrics(paths) if r.get("kind") == "eval"])
    recorded = ((read_json(paths.result) or {}).get("best") or {}).get("objective")
    found = [kept.get("objective"), best and best["objective"], recorded]
    return max((v for v in found if v is not None), default=None)


def kept_cell(run_dir: Path) -> dict[str, Any] | None:
    """The metrics line of the cell whose weights `<run>/best/` holds, if any."""
    file = run_dir / "best" / CELL_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.exists() else None
