"""W&B, offline by default, with every W&B folder inside the run folder."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dreamsweep.config import RunConfig, public_settings
from dreamsweep.runs import RunPaths, read_json, update_result


def point_wandb_dirs_at(run_dir: Path) -> None:
    # Without these, offline runs stage files under ~/.local/share/wandb and ~/.config/wandb.
    for var, sub in [
        ("WANDB_DIR", ""),
        ("WANDB_DATA_DIR", "wandb/data"),
        ("WANDB_CACHE_DIR", "wandb/cache"),
        ("WANDB_CONFIG_DIR", "wandb/config"),
    ]:
        path = run_dir / sub
        path.mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(path)


class WandbTracker:
    def __init__(self, cfg: RunConfig, run_dir: Path, job_type: str = "train") -> None:
        import wandb

        from dreamsweep.cells import scored_weights

        point_wandb_dirs_at(run_dir)
        name = cfg.run_name or run_dir.name
        self.run_dir, self.weights = run_dir, scored_weights(cfg)
        self.run = wandb.init(
            project=cfg.tracker.project,
            entity=cfg.tracker.entity,
            mode=os.environ.get("WANDB_MODE", cfg.tracker.mode),  # the environment wins
            dir=str(run_dir),
            name=name,
            # a sweep and its start: a repeated sweep is a group of its own
            group=f"{cfg.sweep_name}-{run_dir.parent.name}" if cfg.sweep_name else name,
            job_type=job_type,
            tags=list(cfg.tracker.tags),
            config=public_settings(cfg),
            resume="allow",
            id=_stable_run_id(run_dir, job_type),
            settings=wandb.Settings(console="wrap", silent=True),  # the run's console too
        )
        self.run.define_metric("train/step")
        # one objective series per run (its best cell at each evaluation), comparable across runs
        self.run.define_metric("eval/objective", step_metric="train/step", summary="max")
        self.run.define_metric("train/*", step_metric="train/step")
        self.run.define_metric("eval/*", step_metric="train/step")
        self.run.define_metric("val/*", step_metric="train/step", summary="min")
        self.run.define_metric("samples/*", step_metric="train/step")
        self.cells: list[dict[str, Any]] = []
        _link_run(RunPaths(run_dir), job_type, self.run)

    def log(self, metrics: dict[str, Any], step: int) -> None:
        self.run.log({"train/step": step, **metrics})

    def log_eval(self, records: list[dict[str, Any]], grids: dict[str, Path]) -> None:
        """Scores per cell against the training step, the cell's grid as an image."""
        import wandb

        values: dict[str, Any] = {}
        for r in records:
            for cell in self._curves_of(r):  # the step-0 baseline starts every curve
                values.update(
                    {
                        f"eval/{cell}/{k[5:]}": v
                        for k, v in r.items()
                        if k.startswith("eval/") and v is not None
                    }
                )
                values[f"eval/{cell}/objective"] = r.get("objective")
            if r["cell"] in grids:
                values[f"samples/{r['cell']}"] = wandb.Image(
                    str(grids[r["cell"]]), caption=f"step {r['step']}"
                )
        scored = [r["objective"] for r in records if r.get("objective") is not None]
        if scored:
            values["eval/objective"] = max(scored)
        if records:
            self.run.log({"train/step": records[0]["step"], **values})
        self.cells += records

    def log_val(self, records: list[dict[str, Any]]) -> None:
        """val/<set>_loss/<weights>; the step-0 (base) value on every weights' curve."""
        values: dict[str, Any] = {}
        for r in records:
            names = self.weights if r["weights"] == "base" else [r["weights"]]
            for key, value in r.items():
                if key.startswith("val/"):
                    values.update({f"{key}/{w}": value for w in names})
        if records:
            self.run.log({"train/step": records[0]["step"], **values})

    def _curves_of(self, record: dict[str, Any]) -> list[str]:
        """The curve names a cell's scores go to: a base (step 0) cell belongs to the curve of
        every weights the run scores, under the same key as the trained cells."""
        from dreamsweep.cells import BASE, Cell

        cell = Cell.from_record(record)
        if cell.weights != BASE:
            return [cell.name]
        return [f"{cell.sampling.name}-{w}" for w in self.weights]

    def summary(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        best = self.run_dir / "best"
        if exit_code == 0 and best.is_dir():  # a reference: no copy of the weights
            import wandb

            artifact = wandb.Artifact(f"model-{self.run.id}", type="model")
            artifact.add_reference(best.resolve().as_uri())
            self.run.log_artifact(artifact, aliases=["best"])
        if self.cells:
            import wandb

            columns = sorted({k for c in self.cells for k in c})
            table = wandb.Table(
                columns=columns, data=[[c.get(k) for k in columns] for c in self.cells]
            )
            self.run.log({"eval/cells": table})
        self.run.finish(exit_code=exit_code)


def run_link(run) -> dict[str, Any]:
    """Where a W&B run lives: its URL when online; offline, the folder `wandb sync` uploads."""
    online = run.settings.mode == "online"
    return {
        "id": run.id,
        "mode": run.settings.mode,
        "project": run.project,
        "url": run.url if online else None,
        "dir": str(Path(run.dir).parent),
    }


def _link_run(paths: RunPaths, job_type: str, run) -> None:
    """result.json `wandb.<job_type>`: reports link the run without asking W&B."""
    if not paths.result.exists():  # evaluate.py scoring a base model: no run folder
        return
    links = dict((read_json(paths.result) or {}).get("wandb") or {})
    links[job_type] = run_link(run)
    update_result(paths, wandb=links)


def _stable_run_id(run_dir: Path, job_type: str) -> str:
    """One W&B run per run folder and job, so a resumed run continues the same W&B run."""
    import hashlib

    return hashlib.sha1(f"{run_dir.resolve()}:{job_type}".encode()).hexdigest()[:16]
