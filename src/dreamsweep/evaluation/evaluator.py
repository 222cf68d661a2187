"""Evaluation along the run: at each eval step, sample every cell, score it, write it.

Which cells a run scores is `dreamsweep.cells` (planned_cells). Sampling is split across
processes and gathered; the main process scores and writes the cell's folder (its images,
contact sheet and scores: `runs.cell_dir`) and one metrics.jsonl line per cell.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from tqdm.auto import tqdm

from dreamsweep import atomic, cache
from dreamsweep.cells import Cell, Sampling, eval_steps, samplings
from dreamsweep.config import RunConfig
from dreamsweep.data.prompt_text import fill_prompt
from dreamsweep.evaluation import prompts
from dreamsweep.evaluation.sampling import LOOP_VERSION, Job, PromptEmbeddings, SampleSpec, generate
from dreamsweep.metrics.objective import objective
from dreamsweep.metrics.registry import SCORERS
from dreamsweep.metrics.scoring import Scorer, cached_embeddings, load_scorer
from dreamsweep.models.components import SDComponents
from dreamsweep.runs import class_sample_file
from dreamsweep.verdicts import CellSamples


def sample_spec(cfg: RunConfig, sampling: Sampling) -> SampleSpec:
    """How to sample a cell: its sampling setting plus the run's resolution and batching."""
    ev = cfg.eval
    return SampleSpec(
        sampling.scheduler,
        sampling.num_inference_steps,
        sampling.guidance_scale,
        ev.resolution or cfg.data.resolution,
        ev.negative_prompt,
        ev.batch_size,
    )


@dataclass
class EvalSet:
    """The prompt suite of a run: prompts x seeds, plus the class prompt for drift (the prompt
    prior preservation protects, prior.class_prompt)."""

    templates: list[str]
    jobs: list[Job]
    job_prompt: list[int]  # index into templates
    clip_texts: list[str]  # per template, the token removed (what CLIP-T scores against)
    class_jobs: list[Job]

    @classmethod
    def from_config(cls, cfg: RunConfig) -> EvalSet:
        from dreamsweep.training.embeddings import with_trigger

        d, ev = with_trigger(cfg).data, cfg.eval  # {token}: an embedding method's trigger
        templates = prompts.select_templates(
            ev.prompts, d.class_name, ev.num_prompts, ev.prompt_list
        )
        pairs = list(itertools.product(range(len(templates)), ev.seeds))
        class_prompt = fill_prompt(cfg.prior.class_prompt, d.token, d.class_name)
        return cls(
            templates=templates,
            jobs=[Job(fill_prompt(templates[p], d.token, d.class_name), s) for p, s in pairs],
            job_prompt=[p for p, _ in pairs],
            clip_texts=[prompts.without_token(t, d.class_name) for t in templates],
            class_jobs=[Job(class_prompt, s) for s in ev.seeds],
        )

    def first_seeds(self, n: int) -> EvalSet:
        """The same suite with each prompt's first n seeds (adaptive evaluation's blocks)."""
        seeds = {j.seed for j in self.class_jobs[:n]}
        keep = [i for i, j in enumerate(self.jobs) if j.seed in seeds]
        return EvalSet(
            templates=self.templates,
            jobs=[self.jobs[i] for i in keep],
            job_prompt=[self.job_prompt[i] for i in keep],
            clip_texts=self.clip_texts,
            class_jobs=self.class_jobs[:n],
        )


class Evaluator:
    """Built once per run, before training (it needs the base weights for the baselines)."""

    def __init__(
        self,
        cfg: RunConfig,
        accelerator,
        run_dir: Path,
        cache_root: Path,
        scorer: Scorer | None,
        log: Callable[[str], None],
    ) -> None:
        self.cfg, self.acc, self.run_dir, self.cache_root = cfg, accelerator, run_dir, cache_root
        self.scorer, self.log = scorer, log
        self.eval_set = EvalSet.from_config(cfg)
        self.samplings = samplings(cfg)
        self.steps = set(eval_steps(cfg))
        self.base_class = {}  # sampling -> DINO embeddings of the base model's class samples

    def sample(
        self,
        components: SDComponents,
        spec: SampleSpec,
        jobs: list[Job],
        texts: PromptEmbeddings | None = None,
    ) -> list:
        """Each process samples its share of the jobs; every process gets all images back.
        `texts`: prompt embeddings of these weights, shared by the calls that use them."""
        from accelerate.utils import gather_object

        rank, world = self.acc.process_index, self.acc.num_processes
        mine = list(range(rank, len(jobs), world))
        with self.acc.autocast():
            images = generate(components, spec, [jobs[i] for i in mine], texts=texts)
        if world == 1:
            return images
        gathered = gather_object(list(zip(mine, images, strict=True)))
        return [image for _, image in sorted(gathered, key=lambda pair: pair[0])]

    def main_decides(self, value: bool) -> bool:
        """The main process's answer on every process. A branch that holds a collective (the
        sampling gathers) must be taken by all processes or none: another run sharing the cache
        can finish writing an entry between two processes' checks, and then one process would
        wait in a gather that the others never join."""
        return self.broadcast(value)

    def broadcast(self, value):
        """The main process's value on every process (a decision only it can make)."""
        if self.acc.num_processes == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def prepare_baselines(self, base: SDComponents, model_fingerprint: str) -> None:
        """The base model's class-prompt samples per sampling spec, made once (shared cache)."""
        wanted = self.cfg.metrics.scorers
        if self.scorer is None or not any(SCORERS[n].base_class_samples for n in wanted):
            return
        texts = PromptEmbeddings(base)
        for sampling in self.samplings:
            spec = sample_spec(self.cfg, sampling)
            key = {
                "model": model_fingerprint,
                "spec": spec.__dict__,
                "jobs": [j.__dict__ for j in self.eval_set.class_jobs],
                "loop": LOOP_VERSION,
            }
            entry = cache.entry_dir(self.cache_root, "base_samples", key)
            paths = [class_sample_file(entry, j.seed) for j in self.eval_set.class_jobs]
            if self.main_decides(not all(p.exists() for p in paths)):
                images = self.sample(base, spec, self.eval_set.class_jobs, texts)
                if self.acc.is_main_process:
                    with cache.locked(entry):
                        cache.write_spec(entry, key)
                        for path, image in zip(paths, images, strict=True):
                            atomic.write_bytes(path, _png(image))
            self.acc.wait_for_everyone()
            if "dino" in self.scorer.features:
                self.base_class[sampling] = cached_embeddings(
                    self.scorer.features["dino"].model, paths, self.cache_root
                )

    def evaluate(self, step: int, weights: dict[str, Callable]) -> list[dict]:
        """Sample and score every cell at `step`; weights maps a name to a context manager
        that yields the components holding those weights. Each weights' prompt embeddings
        are computed once and shared by all their cells (the weights are fixed meanwhile)."""
        if self.cfg.eval.adaptive and step > 0:
            from dreamsweep.evaluation.adaptive import evaluate_adaptively

            return evaluate_adaptively(self, step, weights)
        records, texts = [], {}
        cells = list(itertools.product(self.samplings, weights.items()))
        with self._progress(len(cells), f"eval step {step}") as bar:
            for sampling, (name, use) in cells:
                cell, started = Cell(step, sampling, name), time.perf_counter()
                spec = sample_spec(self.cfg, sampling)
                with use() as components:
                    shared = texts.setdefault(name, PromptEmbeddings(components))
                    samples = self.sample(components, spec, self.eval_set.jobs, shared)
                    class_samples = self.sample(components, spec, self.eval_set.class_jobs, shared)
                if self.acc.is_main_process:
                    record = self._score_and_write(cell, samples, class_samples)
                    seconds = round(time.perf_counter() - started, 3)
                    records.append({**record, "seconds": seconds})
                bar.update(1)
        return records

    def _progress(self, cells: int, desc: str) -> tqdm:
        """Cells done / total with an ETA; main process, in a terminal, gone when done."""
        return tqdm(
            total=cells,
            desc=desc,
            unit="cell",
            disable=None if self.acc.is_main_process else True,  # None: off if not a TTY
            leave=False,
            dynamic_ncols=True,
        )

    def _score_and_write(self, cell: Cell, samples: list, class_samples: list) -> dict:
        scored = self.score(cell, samples, class_samples, self.eval_set)
        self.write(scored, samples, class_samples)
        return scored.record

    def score(
        self, cell: Cell, samples: list, class_samples: list, eval_set: EvalSet
    ) -> ScoredCell:
        """A cell's scores on the samples of `eval_set` (the whole suite, or the seeds an
        adaptive evaluation gave it so far)."""
        m = self.cfg.metrics
        result = {"scores": {}, "per_prompt": {}, "per_sample": {}}
        if self.scorer is not None:
            base = self.base_class.get(cell.sampling)
            if base is not None:  # the base model's class samples of the same seeds
                base = base[: len(eval_set.class_jobs)]
            result = self.scorer.score(
                samples, eval_set.job_prompt, eval_set.clip_texts, class_samples, base
            )
        scores = result["scores"]
        record = {
            **cell.fields(),
            **{f"eval/{k}": v for k, v in scores.items()},
            "objective": objective(scores, m.objective, m.drift_penalty),
            "seeds_per_prompt": len(eval_set.class_jobs),
        }
        return ScoredCell(cell, record, result, eval_set)

    def write(self, scored: ScoredCell, samples: list, class_samples: list) -> None:
        """The cell's images, grid and scores into the run folder, and one log line."""
        from dreamsweep.evaluation.outputs import write_cell

        es, result, record, cell = scored.eval_set, scored.result, scored.record, scored.cell
        write_cell(
            self.run_dir,
            cell.name,
            cell.step,
            samples,
            class_samples,
            es,
            {
                **record,
                "scores": result["scores"],
                "per_prompt": result["per_prompt"],
                "prompts": [j.prompt for j in es.jobs],
                "seeds": [j.seed for j in es.jobs],
                "samples": sample_table(es, result["per_sample"]),
                "metric_models": self.scorer.describe() if self.scorer else {},
            },
        )
        self.log(f"step {cell.step} {cell.name}: objective {record['objective']}")


@dataclass
class ScoredCell:
    cell: Cell
    record: dict  # the metrics.jsonl line
    result: dict  # Scorer.score's output: scores, per_prompt, per_sample
    eval_set: EvalSet  # the samples it was scored on

    def samples(self, metrics) -> CellSamples | None:
        """Its per-sample scores as the verdicts pair and resample them (metrics: the run's
        MetricsConfig, how it makes an objective)."""
        table = sample_table(self.eval_set, self.result["per_sample"])
        return CellSamples.from_saved(table, metrics.objective, metrics.drift_penalty)


def sample_table(eval_set: EvalSet, per_sample: dict[str, list]) -> dict:
    """The cell scores' `samples`: one column per field, one entry per unit (the prompt suite's
    samples, then the class samples): what the report pairs cells on (same kind, prompt and
    seed = same initial noise) and resamples (verdicts.py)."""
    jobs = eval_set.jobs + eval_set.class_jobs
    return {
        "kind": ["prompt"] * len(eval_set.jobs) + ["class"] * len(eval_set.class_jobs),
        "prompt": [j.prompt for j in jobs],
        "seed": [j.seed for j in jobs],
        "scores": per_sample,
    }


def build_scorer(cfg: RunConfig, cache_root: Path) -> Scorer:
    """Load the feature models (a missing one fails here, before training) and references."""
    return load_scorer(cfg, cache_root)


def _png(image: Image.Image) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
