"""The best cell of a sweep, the cells within noise of it, and how to get it again.

Scores are means over prompts x seeds; the spread across prompts says which gaps are real.
Cells of one sweep share their prompts and seeds, so a gap is judged on the per-prompt
differences (a paired standard error): a cell is "within noise" of the best when the best
beats it by less than two standard errors.
"""

from __future__ import annotations

import shlex
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsweep.best_weights import kept_cell
from dreamsweep.cells import reproduce_overrides
from dreamsweep.metrics.objective import best_cell, objective
from dreamsweep.report.collect import CellRow, Run, Sweep, flatten, format_value
from dreamsweep.runs import COMPLETE, PRUNED, checkpoint_dirs

NOISE_SE = 2.0  # a gap below this many standard errors could be the prompts' and seeds' luck
SCORED_STATES = (COMPLETE, PRUNED)  # a failed run's cells are not candidates
NOT_SETTINGS = ("optuna.", "run_name", "cache_dir", "sweep_name", "hydra.")


@dataclass
class Contender:
    row: CellRow
    gap: float  # best objective minus this cell's
    gap_se: float | None  # standard error of the gap (paired over prompts when possible)

    @property
    def within_noise(self) -> bool:
        return self.gap_se is not None and self.gap <= NOISE_SE * self.gap_se


@dataclass
class BestCard:
    row: CellRow
    run: Run
    objective_se: float | None
    changed: dict[str, Any]  # settings that differ from the defaults (or the overrides given)
    command: str  # reproduces this cell
    weights: Path | None  # where its weights are, if they were kept
    weights_note: str
    contenders: list[Contender]  # the next best cells, nearest first

    @property
    def within_noise(self) -> list[Contender]:
        return [c for c in self.contenders if c.within_noise]


def candidates(sweep: Sweep) -> list[CellRow]:
    """Trained cells (step > 0) with an objective, from runs that completed or were pruned."""
    states = {r.name: r.state for r in sweep.runs}
    return [
        c
        for c in sweep.cells
        if c.step > 0 and c.objective is not None and states[c.run] in SCORED_STATES
    ]


def objective_per_prompt(row: CellRow, run: Run) -> list[float]:
    """The run's objective computed prompt by prompt (scores without a per-prompt value, such
    as prior drift, enter as the cell's mean)."""
    name, penalty = run.objective_settings()
    count = min((len(v) for v in row.per_prompt.values()), default=0)
    values = [
        objective({**row.scores, **{k: v[i] for k, v in row.per_prompt.items()}}, name, penalty)
        for i in range(count)
    ]
    return [v for v in values if v is not None]


def standard_error(values: list[float]) -> float | None:
    return statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None


def best_card(sweep: Sweep, max_contenders: int = 8) -> BestCard | None:
    """The best trained cell and what a user needs to act on it; None before any is scored."""
    rows = candidates(sweep)
    chosen = best_cell(
        [{"objective": r.objective, "step": r.step, "index": i} for i, r in enumerate(rows)]
    )
    if chosen is None:
        return None
    row = rows[chosen["index"]]
    run = sweep.run(row.run)
    prompts = objective_per_prompt(row, run)
    others = sorted((r for r in rows if r is not row), key=lambda r: -r.objective)
    contenders = [
        Contender(
            r,
            row.objective - r.objective,
            _gap_se(prompts, objective_per_prompt(r, sweep.run(r.run))),
        )
        for r in others[:max_contenders]
    ]
    weights, note = weights_of(row, run)
    return BestCard(
        row=row,
        run=run,
        objective_se=standard_error(prompts),
        changed=changed_settings(run),
        command=reproduce_command(row, run),
        weights=weights,
        weights_note=note,
        contenders=contenders,
    )


def _gap_se(best: list[float], other: list[float]) -> float | None:
    if best and len(best) == len(other):
        return standard_error([b - o for b, o in zip(best, other, strict=True)])
    a, b = standard_error(best), standard_error(other)
    return None if a is None or b is None else (a * a + b * b) ** 0.5


def changed_settings(run: Run) -> dict[str, Any]:
    """Settings of the run that differ from the project's defaults (composed from the conf/
    folder the run was started with); the run's overrides when that folder is gone."""
    defaults = _default_config(run.path)
    if defaults is None:
        return dict(o.split("=", 1) for o in _overrides(run) if "=" in o)
    flat, base = flatten(run.config), flatten(defaults)
    return {
        k: v
        for k, v in sorted(flat.items())
        if not k.startswith(NOT_SETTINGS) and base.get(k, object()) != v
    }


def _default_config(run_dir: Path) -> dict[str, Any] | None:
    import yaml

    hydra_file = run_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.exists():
        return None
    sources = yaml.safe_load(hydra_file.read_text())["hydra"]["runtime"]["config_sources"]
    conf = next((s["path"] for s in sources if s.get("provider") == "main"), None)
    if conf is None or not Path(conf).is_dir():
        return None
    from hydra import compose, initialize_config_dir

    from dreamsweep.config import load_config, to_dict

    try:
        with initialize_config_dir(config_dir=conf, version_base="1.3"):
            return to_dict(load_config(compose(config_name="train"), check_machine=False))
    except Exception:  # conf/ changed since the run, or Hydra is busy in this process
        return None


def _overrides(run: Run) -> list[str]:
    """The run's overrides without the Optuna trial link (that trial is over)."""
    return [o for o in run.overrides if not o.lstrip("+~").startswith(NOT_SETTINGS)]


def reproduce_command(row: CellRow, run: Run) -> str:
    """`python train.py ...` that trains this run and evaluates just this cell; it stops at the
    cell's step when the LR schedule does not depend on the total number of steps."""
    cell = reproduce_overrides(row.spec, run.setting("optim.lr_scheduler"), run.final_step)
    kept = [o for o in _overrides(run) if o.split("=", 1)[0].lstrip("+~") not in cell]
    args = kept + [f"{k}={v}" for k, v in cell.items()]
    return "python train.py " + " ".join(map(shell_quote, args))


def shell_quote(arg: str) -> str:
    """Quote for a POSIX shell, readably: "a='x y'" rather than 'a='"'"'x y'"'"''."""
    quoted = shlex.quote(arg)
    if quoted != arg and "'" in arg and not set(arg) & set('"$`\\!'):
        return f'"{arg}"'
    return quoted


def weights_of(row: CellRow, run: Run) -> tuple[Path | None, str]:
    """The folder holding the cell's weights, and a sentence saying what it is."""
    kept = kept_cell(run.path)
    if kept is not None and (kept["step"], kept["cell"]) == (row.step, row.cell):
        return run.path / "best", (
            "the pipeline of this cell, kept when it became the run's best "
            "(StableDiffusionPipeline.from_pretrained; its scheduler is the cell's)"
        )
    model = run.path / "model"
    if row.step == run.final_step and model.is_dir():
        if row.weights == "raw" and (model / "unet_raw").is_dir():
            return model / "unet_raw", "the raw (non-EMA) UNet beside the final pipeline"
        return model, "the final diffusers pipeline (StableDiffusionPipeline.from_pretrained)"
    for step, path in checkpoint_dirs(run.path / "checkpoints"):
        if step == row.step:
            return path, "a resumable training checkpoint at this step (Accelerate state)"
    return None, (
        f"step {row.step} was not kept as a checkpoint; the command above trains it again"
    )


def describe_cell(row: CellRow) -> str:
    return (
        f"step {row.step}, {row.scheduler}, {row.num_inference_steps} steps, "
        f"guidance {format_value(row.guidance_scale)}, {row.weights} weights"
    )
