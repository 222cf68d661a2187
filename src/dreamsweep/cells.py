"""The cell model: what a cell is, which settings fold into the cells of one run, and when.

A run (one training trajectory) is scored at several steps, under several sampling settings,
with its EMA and its raw weights; each combination is a **cell**. Everything that
names, lists, parses or reproduces a cell lives here: the evaluator scores `planned_cells(cfg)`,
the grid sweeper prints and saves the same list, the report reads cells back with
`Cell.from_record` and reproduces one with `reproduce_overrides`. Nothing else builds or
parses a cell name.

Imports neither torch nor diffusers: the sweeper plans with it before anything is loaded.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

# LR schedules that do not depend on train.max_steps: with them, step s of a long run has the
# same weights as the last step of a run trained to s, so the step axis folds exactly.
STEP_INDEPENDENT_SCHEDULES = ("constant", "constant_with_warmup")

# Evaluation axes as config keys. The list axes take several values in one run; the step axis
# (train.max_steps) folds into eval.at_steps; ema.enabled folds into eval.weights=[ema,raw].
LIST_AXES = ("eval.schedulers", "eval.num_inference_steps", "eval.guidance_scale", "eval.weights")
STEP_AXIS = "train.max_steps"
EMA_AXIS = "ema.enabled"
BASE = "base"  # the weights of step 0: the base model, the start of every curve


@dataclass(frozen=True, order=True)
class Sampling:
    """How a cell's images are sampled: everything but the step and the weights."""

    scheduler: str
    num_inference_steps: int
    guidance_scale: float

    @property
    def name(self) -> str:
        return f"{self.scheduler}-n{self.num_inference_steps}-g{self.guidance_scale:g}"


@dataclass(frozen=True)
class Cell:
    """One scored point of a run: (step, sampling setting, weights)."""

    step: int
    sampling: Sampling
    weights: str  # base (step 0) | ema | raw

    @property
    def name(self) -> str:
        """The cell's folder name (`runs.cell_dir`) and its `cell` field in metrics.jsonl."""
        return f"{self.sampling.name}-{self.weights}"

    def fields(self) -> dict[str, Any]:
        """What a metrics.jsonl line and the cell's scores file say about the cell."""
        s = self.sampling
        return {
            "step": self.step,
            "cell": self.name,
            "scheduler": s.scheduler,
            "num_inference_steps": s.num_inference_steps,
            "guidance_scale": s.guidance_scale,
            "weights": self.weights,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Cell:
        """The cell of a metrics.jsonl line (the inverse of `fields`)."""
        sampling = Sampling(
            str(record["scheduler"]),
            int(record["num_inference_steps"]),
            float(record["guidance_scale"]),
        )
        return cls(int(record["step"]), sampling, str(record["weights"]))


def step_folds(lr_scheduler: str) -> bool:
    """Whether the step axis folds: the LR at step s must not depend on the total steps."""
    return lr_scheduler in STEP_INDEPENDENT_SCHEDULES


def eval_steps(cfg) -> list[int]:
    """Step 0 (the base model), eval.at_steps, every eval.every_n_steps, and the final step;
    none when evaluation is off."""
    ev, last = cfg.eval, cfg.train.max_steps
    if not ev.enabled:
        return []
    steps = {0, last, *(s for s in ev.at_steps if s <= last)}
    if ev.every_n_steps:
        steps |= set(range(ev.every_n_steps, last + 1, ev.every_n_steps))
    return sorted(steps)


def steps_beyond_training(cfg) -> list[int]:
    """eval.at_steps that the run never reaches (they are not scored; the caller says so)."""
    return sorted(s for s in cfg.eval.at_steps if s > cfg.train.max_steps)


def samplings(cfg) -> list[Sampling]:
    ev = cfg.eval
    return [
        Sampling(s, int(n), float(g))
        for s, n, g in itertools.product(ev.schedulers, ev.num_inference_steps, ev.guidance_scale)
    ]


def scored_weights(cfg) -> list[str]:
    """The trained weights a run scores: eval.weights that exist (EMA only when it is on)."""
    available = ("ema", "raw") if cfg.ema.enabled else ("raw",)
    chosen = [w for w in cfg.eval.weights if w in available]
    return chosen or ["raw"]


def planned_cells(cfg) -> list[Cell]:
    """Every cell a complete run scores, in the order it scores them."""
    cells = []
    for step in eval_steps(cfg):
        weights = [BASE] if step == 0 else scored_weights(cfg)
        cells += [Cell(step, s, w) for s in samplings(cfg) for w in weights]
    return cells


def reproduce_overrides(cell: Cell, lr_scheduler: str, final_step: int | None) -> dict[str, str]:
    """Overrides that train a run again and score just this cell; the run stops at the cell's
    step when the LR schedule allows it (otherwise it trains to its own final step)."""
    s = cell.sampling
    overrides = {
        "eval.schedulers": f"[{s.scheduler}]",
        "eval.num_inference_steps": f"[{s.num_inference_steps}]",
        "eval.guidance_scale": f"[{s.guidance_scale:g}]",
        "eval.weights": f"[{cell.weights}]",
    }
    if cell.step != final_step and step_folds(lr_scheduler):
        overrides["train.max_steps"] = str(cell.step)
        overrides["eval.at_steps"] = "[]"
        overrides["eval.every_n_steps"] = "null"
    return overrides
