"""The best cell of a sweep, how sure we are of it, and how to get it again.

Cells of a sweep share their prompts, seeds and initial noise, so every verdict is a paired
bootstrap over their samples (verdicts.py): the gap between the best cell and each next one
with its 95% interval ("worse" when the interval excludes 0, else "within noise"), and each
cell's probability of being the best. The cells with P(best) >= 5% are the set the data cannot
separate; for the top two, how many seeds per prompt would.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsweep import verdicts
from dreamsweep.best_weights import kept_cell
from dreamsweep.cells import reproduce_overrides
from dreamsweep.metrics.objective import rank_key
from dreamsweep.report.collect import CellRow, Run, Sweep, flatten, format_value
from dreamsweep.runs import COMPLETE, PRUNED, checkpoint_dirs

SCORED_STATES = (COMPLETE, PRUNED)  # a failed run's cells are not candidates
NOT_SETTINGS = ("optuna.", "run_name", "cache_dir", "sweep_name", "hydra.", "launcher.threads")


@dataclass
class Contender:
    row: CellRow
    gap: verdicts.Gap | None  # best minus this cell; None without per-sample scores
    p_best: float | None

    @property
    def verdict(self) -> str:
        if self.gap is None:
            return "not compared (no per-sample scores: re-score with evaluate.py)"
        if self.gap.verdict == "better":
            return "worse"
        return "within noise" if self.gap.verdict == "within noise" else "better"

    @property
    def within_noise(self) -> bool:
        return self.gap is not None and self.gap.verdict == "within noise"


@dataclass
class BestCard:
    row: CellRow
    run: Run
    interval: tuple[float, float] | None  # 95% bootstrap interval of its objective
    p_best: float | None  # its probability of being the best cell
    changed: dict[str, Any]  # settings that differ from the defaults (or the overrides given)
    command: str  # reproduces this cell
    weights: Path | None  # where its weights are, if they were kept
    weights_note: str
    contenders: list[Contender]  # the next best cells, nearest first
    inseparable: list[Contender]  # every other cell with P(best) >= 5%: the data cannot tell
    seeds_needed: int | None  # seeds per prompt that would separate the top two
    suite: str  # what the verdicts are about: "3 prompts x 16 seeds (+16 class samples)"

    @property
    def within_noise(self) -> list[Contender]:
        return [c for c in self.contenders if c.within_noise]

    @property
    def more_seeds_override(self) -> str | None:
        if self.seeds_needed is None:
            return None
        return f"eval.seeds='${{range:{self.seeds_needed}}}'"


def candidates(sweep: Sweep) -> list[CellRow]:
    """Trained cells (step > 0) with an objective, from runs that completed or were pruned,
    best first by the one tie rule (metrics.objective.rank_key)."""
    states = {r.name: r.state for r in sweep.runs}
    order = {r.name: i for i, r in enumerate(sweep.runs)}
    rows = [
        c
        for c in sweep.cells
        if c.step > 0 and c.objective is not None and states[c.run] in SCORED_STATES
    ]
    return sorted(rows, key=lambda c: rank_key(c.objective, c.step, order[c.run], c.cell))


def suite_text(samples: verdicts.CellSamples | None) -> str:
    if samples is None:
        return "prompt suite without per-sample scores"
    prompts = {p for kind, p, _ in samples.units if kind == "prompt"}
    klass = sum(kind == "class" for kind, _, _ in samples.units)
    extra = f" (+{klass} class-prompt samples)" if klass else ""
    return f"{len(prompts)} prompts x {samples.seeds_per_prompt} seeds{extra}"


def best_card(sweep: Sweep, max_contenders: int = 8) -> BestCard | None:
    """The best trained cell and what a user needs to act on it; None before any is scored."""
    rows = candidates(sweep)
    if not rows:
        return None
    row, others = rows[0], rows[1:]
    run = sweep.run(row.run)
    comparable = [r for r in rows if r.samples is not None]
    chances = verdicts.p_best([r.samples for r in comparable]) if row.samples is not None else None
    p_of = dict(zip(map(id, comparable), chances or [], strict=False))

    def contender(r: CellRow) -> Contender:
        gap = None
        if row.samples is not None and r.samples is not None:
            gap = verdicts.compare(row.samples, r.samples)
        return Contender(r, gap, p_of.get(id(r)))

    contenders = [contender(r) for r in others[:max_contenders]]
    likely = [
        contender(r) if i >= max_contenders else contenders[i]
        for i, r in enumerate(others)
        if p_of.get(id(r), 0.0) >= verdicts.P_BEST_SET
    ]
    seeds = None
    if contenders and contenders[0].gap is not None and contenders[0].within_noise:
        seeds = verdicts.seeds_to_separate(contenders[0].gap, row.samples.seeds_per_prompt)
    weights, note = weights_of(row, run)
    return BestCard(
        row=row,
        run=run,
        interval=row.intervals.get("objective"),
        p_best=p_of.get(id(row)),
        changed=changed_settings(run),
        command=reproduce_command(row, run),
        weights=weights,
        weights_note=note,
        contenders=contenders,
        inseparable=likely,
        seeds_needed=seeds,
        suite=suite_text(row.samples),
    )


def changed_settings(run: Run) -> dict[str, Any]:
    """Settings of the run that differ from the project's defaults (composed from the conf/
    folder the run was started with); the run's overrides when that folder is gone."""
    defaults = run.defaults
    if defaults is None:
        return dict(o.split("=", 1) for o in _overrides(run) if "=" in o)
    flat, base = flatten(run.config), flatten(defaults)
    return {
        k: v
        for k, v in sorted(flat.items())
        if not k.startswith(NOT_SETTINGS) and base.get(k, object()) != v
    }


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


def pipeline_class(folder: Path) -> str:
    """The diffusers class that loads a saved pipeline folder (SD or SDXL), as its
    model_index.json names it; a LoRA folder loads on its base's (base_model.json)."""
    from dreamsweep.training.lora import BASE_FILE, lora_base

    if (folder / BASE_FILE).exists():
        base = Path(lora_base(folder))
        return pipeline_class(base) if base.is_dir() else "DiffusionPipeline"
    index = folder / "model_index.json"
    if not index.exists():
        return "StableDiffusionPipeline"
    return json.loads(index.read_text(encoding="utf-8")).get("_class_name", "DiffusionPipeline")


def how_to_load(folder: Path) -> str:
    """The call that loads a saved folder: a pipeline, or adapters on their base."""
    from dreamsweep.training.lora import BASE_FILE

    if (folder / BASE_FILE).exists():
        return f"load_lora_weights on its base, a {pipeline_class(folder)}: base_model.json"
    return f"{pipeline_class(folder)}.from_pretrained"


def weights_of(row: CellRow, run: Run) -> tuple[Path | None, str]:
    """The folder holding the cell's weights, and a sentence saying what it is."""
    kept = kept_cell(run.path)
    if kept is not None and (kept["step"], kept["cell"]) == (row.step, row.cell):
        return run.path / "best", (
            "the weights of this cell, kept when it became the run's best "
            f"({how_to_load(run.path / 'best')}; its scheduler is the cell's)"
        )
    model = run.path / "model"
    if row.step == run.final_step and model.is_dir():
        if row.weights == "raw" and (model / "unet_raw").is_dir():
            return model / "unet_raw", "the raw (non-EMA) UNet beside the final pipeline"
        return model, f"the final weights ({how_to_load(model)})"
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
