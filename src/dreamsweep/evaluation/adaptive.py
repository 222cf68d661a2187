"""Adaptive evaluation (`eval.adaptive=true`): samples where a verdict needs them.

At an evaluation step every cell first samples `eval.adaptive_block` seeds per prompt (and the
class prompt's same seeds). Then, round by round, a cell gets the next block of seeds only while
its paired interval against the run's best cell so far (of this step or an earlier one) still
holds 0 — a cell already clearly worse stops early — and the leader of this step, when it
leads the run, gets every seed. No cell goes past `eval.seeds`. Each cell is scored and
written on the seeds it got (`seeds_per_prompt` in its metrics line); seeds are the suite's
first ones, so cells still pair on the seeds they share (verdicts.py). Step 0, the baseline,
always gets every seed.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from dreamsweep import verdicts
from dreamsweep.cells import Cell
from dreamsweep.evaluation.sampling import Job, PromptEmbeddings


@dataclass
class Progress:
    """One cell's evaluation so far."""

    cell: Cell
    use: object  # opens the context holding the cell's weights
    seeds: int = 0  # seeds per prompt sampled so far
    images: dict[Job, object] = field(default_factory=dict)
    scored: object | None = None  # evaluator.ScoredCell on `seeds` seeds
    seconds: float = 0.0


def evaluate_adaptively(evaluator, step: int, weights: dict) -> list[dict]:
    """Evaluator.evaluate with seeds in blocks; the same records, files and log lines."""
    ev = evaluator.cfg.eval
    cells = [
        Progress(Cell(step, sampling, name), use)
        for sampling, (name, use) in itertools.product(evaluator.samplings, weights.items())
    ]
    texts: dict = {}
    earlier = _earlier_best(evaluator, step) if evaluator.acc.is_main_process else None
    pending = list(range(len(cells)))
    while pending:
        for i in pending:
            _sample_block(evaluator, cells[i], texts, ev.adaptive_block)
        if evaluator.acc.is_main_process:
            for i in pending:
                _score(evaluator, cells[i])
            pending = _needing_more(cells, earlier, len(ev.seeds), evaluator.cfg.metrics)
        pending = evaluator.broadcast(pending)
    records = []
    if evaluator.acc.is_main_process:
        for progress in cells:
            samples, class_samples = _images(progress, progress.scored.eval_set)
            evaluator.write(progress.scored, samples, class_samples)
            records.append({**progress.scored.record, "seconds": round(progress.seconds, 3)})
    return records


def _earlier_best(evaluator, step: int) -> tuple[float, verdicts.CellSamples] | None:
    """The run's best trained cell before this step, from its folder (so a resumed run
    decides exactly as an uninterrupted one)."""
    from dreamsweep.metrics.objective import best_cell
    from dreamsweep.runs import RunPaths, read_cell_scores, read_metrics

    records = read_metrics(RunPaths(evaluator.run_dir))
    best = best_cell([r for r in records if r.get("kind") == "eval" and r["step"] < step])
    if best is None:
        return None
    saved = read_cell_scores(evaluator.run_dir, best["step"], best["cell"])
    metrics = evaluator.cfg.metrics
    samples = verdicts.CellSamples.from_saved(
        saved.get("samples"), metrics.objective, metrics.drift_penalty
    )
    return None if samples is None else (best["objective"], samples)


def _sample_block(evaluator, progress: Progress, texts: dict, block: int) -> None:
    from dreamsweep.evaluation.evaluator import sample_spec

    started = time.perf_counter()
    full = evaluator.eval_set
    new = {j.seed for j in full.class_jobs[progress.seeds : progress.seeds + block]}
    jobs = [j for j in full.jobs if j.seed in new]
    class_jobs = [j for j in full.class_jobs if j.seed in new]
    spec = sample_spec(evaluator.cfg, progress.cell.sampling)
    with progress.use() as components:
        shared = texts.setdefault(progress.cell.weights, PromptEmbeddings(components))
        images = evaluator.sample(components, spec, jobs, shared)
        class_images = evaluator.sample(components, spec, class_jobs, shared)
    progress.images.update(zip(jobs + class_jobs, images + class_images, strict=True))
    progress.seeds += len(new)
    progress.seconds += time.perf_counter() - started


def _images(progress: Progress, eval_set) -> tuple[list, list]:
    """The cell's samples and class samples of `eval_set`, in its order."""
    images = progress.images
    return [images[j] for j in eval_set.jobs], [images[j] for j in eval_set.class_jobs]


def _score(evaluator, progress: Progress) -> None:
    started = time.perf_counter()
    subset = evaluator.eval_set.first_seeds(progress.seeds)
    progress.scored = evaluator.score(progress.cell, *_images(progress, subset), subset)
    progress.seconds += time.perf_counter() - started


def _needing_more(cells: list[Progress], earlier, all_seeds: int, metrics) -> list[int]:
    """The cells whose verdict against the run's best cell so far is not settled yet.

    The leader of this step, when it leads the run, always gets every seed: its estimate is
    the one the run keeps and reports, and a leader on a few lucky seeds would make every
    other cell look clearly worse (the winner's curse). The others stop once their paired
    interval against the leader (or the run's earlier best) excludes 0."""
    scored = [(p.scored.record["objective"], i) for i, p in enumerate(cells)]
    scored = [(o, i) for o, i in scored if o is not None]
    if not scored:
        return []
    top_objective, leader = max(scored, key=lambda pair: (pair[0], -pair[1]))
    reference = cells[leader].scored.samples(metrics)
    if earlier is not None and earlier[0] > top_objective:
        reference, leader = earlier[1], None
    more = [] if leader is None else [leader]
    for i, progress in enumerate(cells):
        mine = progress.scored.samples(metrics)
        if i == leader or mine is None or reference is None:
            continue
        gap = verdicts.compare(reference, mine)
        if gap is None or gap.low <= 0:
            more.append(i)
    return sorted(i for i in set(more) if cells[i].seeds < all_seeds)
