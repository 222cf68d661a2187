"""DreamSweep vs plain baselines, measured in one run: ratios, not absolute timings.

    OMP_NUM_THREADS=1 python benchmarks/run.py --quick     # under 10 minutes on 2 CPU cores
    python benchmarks/run.py --device cuda --precision bf16  # on a GPU: 512 px, mixed precision

Writes benchmarks/results/<date>.json and <date>.md: one row per comparison, each
{name, ours, baseline, ratio, target, met} plus both sides' peak memory. Both sides of a row
are measured in this run, interleaved (A, B, B, A, ...) where the machine load could drift,
and summarised by medians, so the ratios compare across machines and load. What each row
measures is in its section's docstring below and in the row's `detail`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import IO, Any

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SIDE = HERE / "side.py"
PLAIN_DREAMBOOTH = HERE / "plain_dreambooth.py"
TOY_SUBJECT_DIR = ROOT / "src" / "dreamsweep" / "assets" / "toy_subject"
SIZES = ("tiny", "10x", "100x")
VARIANTS = {"unet": "UNet only", "te": "+ text encoder", "prior": "+ text encoder + prior"}

# --quick runs the sweep presets smaller: few samples per cell, few steps. The comparisons
# keep their structure (steps x schedulers folded vs not; pruner vs none on the same space).
QUICK_EVAL = ["eval.seeds=[0,1]", "eval.num_inference_steps=[10]"]
QUICK_GRID = ["optim.lr=1e-3", "prior.enabled=false", "train.max_steps=10,20", *QUICK_EVAL]
QUICK_SEARCH = [
    "hydra.sweeper.n_trials=4",
    "train.max_steps=40",
    "eval.every_n_steps=10",
    *QUICK_EVAL,
]


# ---------------------------------------------------------------------------------------------
# rows


@dataclass(frozen=True)
class Target:
    """What the issue asks of a ratio: ours / baseline `op` value."""

    op: str  # "<=" | "=="
    value: float

    def met(self, ratio: float) -> bool:
        return ratio <= self.value if self.op == "<=" else abs(ratio - self.value) < 1e-12

    def __str__(self) -> str:
        return f"{self.op} {self.value:.2f}"


@dataclass
class Row:
    name: str
    unit: str
    ours: float | None
    baseline: float | None
    target: Target | None = None
    ours_peak_mb: float | None = None
    baseline_peak_mb: float | None = None
    detail: str = ""
    ratio: float | None = field(init=False)
    met: bool | None = field(init=False)

    def __post_init__(self) -> None:
        ok = self.ours is not None and self.baseline not in (None, 0)
        self.ratio = self.ours / self.baseline if ok else None
        self.met = self.target.met(self.ratio) if self.target and self.ratio is not None else None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "target": str(self.target) if self.target else None}


# ---------------------------------------------------------------------------------------------
# running things


@dataclass
class Context:
    """What every section needs: the settings, a scratch folder, the environment."""

    args: argparse.Namespace
    tmp: Path
    tiny_model: Path  # the tiny model saved as a diffusers folder (for the plain baselines)
    logs: Path

    @property
    def quick(self) -> bool:
        return self.args.quick

    def env(self, cache: Path | None = None) -> dict[str, str]:
        """Children run at the benchmark's thread count, with a cache of the benchmark's own."""
        env = {**os.environ, "DREAMSWEEP_CACHE_DIR": str(cache or self.tmp / "cache")}
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("MKL_NUM_THREADS", "1")
        env["WANDB_MODE"] = "disabled"  # every run here uses tracker=disk; belt and braces
        return env

    def log_file(self, name: str) -> IO[str]:
        return open(self.logs / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.log", "w")  # noqa: SIM115


def device_args(args: argparse.Namespace) -> list[str]:
    return [
        f"--device={args.device}",
        f"--precision={args.precision}",
        f"--resolution={args.resolution}",
    ]


def run_overrides(args: argparse.Namespace) -> list[str]:
    """train.py overrides for the device settings (the tiny model at the chosen resolution)."""
    return [
        f"data.resolution={args.resolution}",
        f"model.sample_size={args.resolution}",
        f"launcher.mixed_precision={args.precision}",
    ]


@dataclass
class Finished:
    seconds: float
    peak_mb: float  # the largest RSS of any process of the tree (Linux wait4 semantics)
    returncode: int


def run_process(cmd: list[str], env: dict[str, str], log: IO[str]) -> Finished:
    """Run to the end; wall time and peak RSS from wait4, which covers the process's waited-for
    children too (train.py's worker, a sweep's runs)."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Finished(seconds, usage.ru_maxrss / 1024, proc.returncode)


def must_finish(cmd: list[str], env: dict[str, str], log: IO[str]) -> Finished:
    done = run_process(cmd, env, log)
    if done.returncode != 0:
        log.flush()
        tail = "\n".join(Path(log.name).read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"exit code {done.returncode}: {' '.join(cmd)}\n{tail}")
    return done


class Side:
    """A running benchmarks/side.py: set up once, then one unit of work per `run()`."""

    def __init__(self, ctx: Context, kind: str, *extra: str) -> None:
        self.name = " ".join([kind, *extra])
        self.log = ctx.log_file(self.name)
        cmd = [sys.executable, str(SIDE), kind, *extra, *device_args(ctx.args)]
        cmd += [f"--model-dir={ctx.tiny_model}"]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=ctx.env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, text=True,
        )  # fmt: skip

    def answer(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"side '{self.name}' ended early; see {self.log.name}")
        return json.loads(line)

    def run(self) -> dict[str, Any]:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.answer()

    def close(self) -> float:
        """Stop the side; its peak memory (MiB)."""
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        peak = self.answer()["peak_mb"]
        self.proc.wait()
        return peak


@dataclass
class Paired:
    ours: list[float]
    baseline: list[float]
    ours_info: dict[str, Any]
    baseline_info: dict[str, Any]
    ours_peak_mb: float
    baseline_peak_mb: float
    values: tuple[Any, Any]  # what each side's last unit returned

    @property
    def medians(self) -> tuple[float, float]:
        return statistics.median(self.ours), statistics.median(self.baseline)


def interleaved(ours: Side, base: Side, warmup: int, repeats: int) -> Paired:
    """Both sides set up side by side, then `warmup` untimed units each, then `repeats` timed
    ones in the order A B, B A, A B, ...: a drifting load hits both sides alike."""
    try:
        infos = ours.answer(), base.answer()
        for _ in range(warmup):
            ours.run()
            base.run()
        times: dict[Side, list[float]] = {ours: [], base: []}
        last: dict[Side, Any] = {}
        for i in range(repeats):
            for side in (ours, base) if i % 2 == 0 else (base, ours):
                answer = side.run()
                times[side].append(answer["seconds"])
                last[side] = answer.get("value")
        peaks = ours.close(), base.close()
    finally:
        for side in (ours, base):
            if side.proc.poll() is None:
                side.proc.kill()
                side.proc.wait()
            side.log.close()
    return Paired(times[ours], times[base], *infos, *peaks, (last.get(ours), last.get(base)))


# ---------------------------------------------------------------------------------------------
# sections


def step_rows(ctx: Context) -> list[Row]:
    """Our training step vs the floor, per UNet size and what is trained.

    Ours: dreamsweep.training.loop.train_step on a TrainState set up as the worker does it
    (benchmarks/product.py), EMA off. Floor: a bare loop on precomputed latents (and
    embeddings), UNet (+ text encoder) forward + backward + AdamW (torch's fused kernel: the
    fastest plain loop, see side.fastest_adamw). Same model weights, batch 1
    (+ 1 class image under prior), each side in its own process, steps interleaved.
    """
    warmup, repeats = 2, 6 if ctx.quick else 20
    rows = []
    for size in SIZES:
        for variant, label in VARIANTS.items():
            extra = (f"--size={size}", f"--variant={variant}")
            pair = interleaved(
                Side(ctx, "step-ours", *extra), Side(ctx, "step-floor", *extra), warmup, repeats
            )
            ours, floor = pair.medians
            rows.append(
                Row(
                    f"train step, {size} UNet, {label}",
                    "s/step",
                    ours,
                    floor,
                    Target("<=", 1.10),
                    pair.ours_peak_mb,
                    pair.baseline_peak_mb,
                    f"{pair.ours_info['params'] / 1e6:.2f} M UNet params; median of {repeats} "
                    f"interleaved steps after {warmup} warm-up",
                )
            )
            print(_progress(rows[-1]), flush=True)
    return rows


def startup_row(ctx: Context) -> Row:
    """`python train.py` for one step vs a plain script that does the same, process wall time.

    Ours: train.py on the saved tiny model, train.max_steps=1, eval off, tracker=disk, prior and
    EMA off, a fresh cache each time (so it encodes its latents like the plain script does).
    Baseline: benchmarks/plain_dreambooth.py (load the pipeline, VAE-encode the images, one
    UNet + text-encoder AdamW step, save the pipeline). Alternated A B, B A, ...
    """
    rounds = 2 if ctx.quick else 5
    ours_cmd = [
        sys.executable, "train.py", "model=tiny", f"model.path={ctx.tiny_model}",
        "train.max_steps=1", "eval.enabled=false", "tracker=disk", "prior.enabled=false",
        "ema.enabled=false", *run_overrides(ctx.args),
    ]  # fmt: skip
    plain_cmd = [
        sys.executable, str(PLAIN_DREAMBOOTH), f"--model={ctx.tiny_model}",
        f"--images={TOY_SUBJECT_DIR}", f"--resolution={ctx.args.resolution}",
        f"--device={ctx.args.device}", f"--precision={ctx.args.precision}",
    ]  # fmt: skip
    runs: dict[str, list[Finished]] = {"ours": [], "plain": []}
    for i in range(rounds):
        for name in ("ours", "plain") if i % 2 == 0 else ("plain", "ours"):
            out = ctx.tmp / "startup" / f"{name}-{i}"
            cmd = (
                [*ours_cmd, f"hydra.run.dir={out}"]
                if name == "ours"
                else [*plain_cmd, f"--out={out}"]
            )
            with ctx.log_file(f"startup-{name}-{i}") as log:
                runs[name].append(must_finish(cmd, ctx.env(out / "cache"), log))
    ours, plain = runs["ours"], runs["plain"]
    return Row(
        "start-up: train.py 1 step vs plain script",
        "s",
        statistics.median(r.seconds for r in ours),
        statistics.median(r.seconds for r in plain),
        Target("<=", 0.80),
        max(r.peak_mb for r in ours),
        max(r.peak_mb for r in plain),
        f"process wall time, median of {rounds} alternated runs each (tiny model, cold cache)",
    )


def eval_row(ctx: Context) -> Row:
    """Evaluation sampling per image: ours vs one StableDiffusionPipeline call per image.

    Ours: dreamsweep.evaluation.sampling.generate over the first cell's jobs of a model=tiny run
    (its scheduler, steps, guidance, resolution, batch size). Baseline: the same jobs, one plain
    pipeline call each with the same scheduler class, steps, guidance, resolution and seeds.
    """
    warmup, repeats = (0, 2) if ctx.quick else (1, 6)
    pair = interleaved(Side(ctx, "eval-ours"), Side(ctx, "eval-plain"), warmup, repeats)
    images = pair.ours_info["images"]
    ours, plain = (m / images for m in pair.medians)
    a, b = pair.values
    gap = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
    return Row(
        "evaluation sampling per image vs plain pipeline calls",
        "s/image",
        ours,
        plain,
        Target("<=", 0.50),
        pair.ours_peak_mb,
        pair.baseline_peak_mb,
        f"{images} images, {pair.ours_info['spec']}; median of {repeats} interleaved; "
        f"same images: max |mean pixel diff| {gap:.3f}",
    )


def grid_rows(ctx: Context) -> list[Row]:
    """The demo grid folded (the sweeper's default) vs naive (hydra.sweeper.fold=false).

    `python train.py -m +sweep=demo tracker=disk`, each grid into its own sweep folder with its
    own empty cache (both pay for class images once). --quick runs a smaller grid
    (QUICK_GRID: one LR, no prior, steps 10,20 x the preset's schedulers, 2 seeds). Scores:
    every cell of a naive run is looked up in the folded run with the same settings; equal
    means every score is identical.
    """
    extra = QUICK_GRID if ctx.quick else []
    grids = {}
    for name, fold in (("folded", []), ("naive", ["hydra.sweeper.fold=false"])):
        out = ctx.tmp / f"grid-{name}"
        cmd = [
            sys.executable, "train.py", "-m", "+sweep=demo", "tracker=disk", *extra, *fold,
            f"hydra.sweep.dir={out / 'sweep'}",
        ]  # fmt: skip
        with ctx.log_file(f"grid-{name}") as log:
            done = must_finish(cmd, ctx.env(out / "cache"), log)
        grids[name] = (done, read_runs(out / "sweep"))
    (f_done, folded), (n_done, naive) = grids["folded"], grids["naive"]
    compared, equal, worst = compare_cells(folded, naive)
    counts = (
        f"runs {len(folded)} vs {len(naive)}, scored cells {count_cells(folded)} vs "
        f"{count_cells(naive)}, training steps {sum_steps(folded)} vs {sum_steps(naive)}"
        + (f" (--quick: {' '.join(QUICK_GRID)})" if ctx.quick else "")
    )
    return [
        Row(
            "demo grid wall time: folded vs naive",
            "s",
            f_done.seconds,
            n_done.seconds,
            None,
            f_done.peak_mb,
            n_done.peak_mb,
            counts,
        ),
        Row(
            "demo grid: naive cells whose scores the folded run reproduces",
            "cells",
            equal,
            compared,
            Target("==", 1.0),
            detail=f"{compared} cells compared by (settings, step, cell); largest score "
            f"difference {worst:.3g}",
        ),
    ]


def search_rows(ctx: Context) -> list[Row]:
    """The Optuna demo search with the preset's pruner vs hydra.sweeper.pruner=none.

    `python train.py -m +sweep=demo_search tracker=disk`, a sqlite study in the scratch folder
    per search. Training steps: the sum of every trial's final step (a pruned trial stops at
    its pruned step). Best objective: the study's best complete trial. --quick: QUICK_SEARCH.
    """
    preset = yaml.safe_load((ROOT / "conf" / "sweep" / "demo_search.yaml").read_text())
    pruner = preset["hydra"]["sweeper"]["pruner"]
    extra = QUICK_SEARCH if ctx.quick else []
    searches = {}
    for name, setting in (("pruned", []), ("unpruned", ["hydra.sweeper.pruner=none"])):
        out = ctx.tmp / f"search-{name}"
        out.mkdir(parents=True)
        cmd = [
            sys.executable, "train.py", "-m", "+sweep=demo_search", "tracker=disk", *extra,
            *setting, f"hydra.sweeper.storage=sqlite:///{out / 'study.db'}",
            f"hydra.sweep.dir={out / 'sweep'}",
        ]  # fmt: skip
        with ctx.log_file(f"search-{name}") as log:
            done = must_finish(cmd, ctx.env(out / "cache"), log)
        searches[name] = (done, read_runs(out / "sweep"), best_of_study(out / "sweep"))
    (p_done, p_runs, p_best), (u_done, u_runs, u_best) = searches["pruned"], searches["unpruned"]
    states = {
        name: _state_counts(runs) for name, runs in (("pruned", p_runs), ("unpruned", u_runs))
    }
    detail = (
        f"pruner '{pruner}' vs none; trials {states['pruned']} vs {states['unpruned']}; "
        f"wall {p_done.seconds:.0f} s vs {u_done.seconds:.0f} s"
        + (f" (--quick: {' '.join(QUICK_SEARCH)})" if ctx.quick else "")
    )
    return [
        Row(
            "search training steps: pruner vs none",
            "steps",
            sum_steps(p_runs),
            sum_steps(u_runs),
            None,
            p_done.peak_mb,
            u_done.peak_mb,
            detail,
        ),
        Row(
            "search best objective: pruner vs none",
            "objective",
            p_best,
            u_best,
            None,
            detail="the study's best complete trial (optimization_results.yaml)",
        ),
    ]


# ---------------------------------------------------------------------------------------------
# reading sweep folders


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


def _state_counts(runs: list[RunRecord]) -> str:
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


# ---------------------------------------------------------------------------------------------
# load, output


class LoadSampler:
    """The 1-minute load average every few seconds: other work on the machine shows here."""

    def __init__(self, every: float = 5.0) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, args=(every,), daemon=True)

    def _loop(self, every: float) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(every)

    @contextmanager
    def running(self) -> Iterator[LoadSampler]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()

    def summary(self) -> dict[str, float]:
        s = self.samples or [os.getloadavg()[0]]
        return {"min": min(s), "median": statistics.median(s), "max": max(s)}


def machine(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1 (set for children)"),
        "torch": version("torch"),
        "diffusers": version("diffusers"),
        "device": args.device,
        "precision": args.precision,
        "resolution": args.resolution,
    }


def _num(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _met(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    load = meta["load_1min"]
    lines = [
        f"# DreamSweep benchmarks, {meta['date']} ({'quick' if meta['quick'] else 'full'})",
        "",
        f"{m['device']} ({m['precision']}), {m['resolution']} px; {m['cpus']} CPUs, "
        f"OMP_NUM_THREADS={m['omp_num_threads']}; torch {m['torch']}, diffusers "
        f"{m['diffusers']}. Benchmark wall time {meta['wall_seconds']:.0f} s; 1-min load average "
        f"during it {load['min']:.2f} / {load['median']:.2f} / {load['max']:.2f} "
        "(min / median / max). Ratio = ours / baseline.",
        "",
        "| name | unit | ours | baseline | ratio | target | met | peak MiB ours / baseline "
        "| detail |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = f"{_num(r.ours_peak_mb)} / {_num(r.baseline_peak_mb)}"
        lines.append(
            f"| {r.name} | {r.unit} | {_num(r.ours)} | {_num(r.baseline)} | "
            f"{'—' if r.ratio is None else f'{r.ratio:.2f}'} | {r.target or '—'} | "
            f"{_met(r.met)} | {memory} | {r.detail} |"
        )
    return "\n".join(lines) + "\n"


def _progress(row: Row) -> str:
    ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
    return f"  {row.name}: ours {_num(row.ours)} vs {_num(row.baseline)} {row.unit} -> {ratio}"


# ---------------------------------------------------------------------------------------------
# main

SECTIONS: dict[str, Callable[[Context], Row | list[Row]]] = {
    "step": step_rows,
    "startup": startup_row,
    "eval": eval_row,
    "grid": grid_rows,
    "search": search_rows,
}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, smaller sweeps")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:n]")
    p.add_argument(
        "--precision", choices=["no", "fp16", "bf16"], help="default: no on CPU, bf16 on a GPU"
    )
    p.add_argument("--resolution", type=int, help="default: 64 on CPU, 512 on a GPU")
    p.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.precision = args.precision or ("bf16" if gpu else "no")
    args.resolution = args.resolution or (512 if gpu else 64)
    return args


def prepare(args: argparse.Namespace, tmp: Path) -> Context:
    """The scratch folder's logs and the tiny model saved for the plain baselines."""
    ctx = Context(args, tmp, tmp / "tiny-model", tmp / "logs")
    ctx.logs.mkdir()
    save = [sys.executable, str(SIDE), "save-tiny", f"--model-dir={ctx.tiny_model}"]
    with ctx.log_file("save-tiny") as log:
        must_finish([*save, *device_args(args)], ctx.env(), log)
    return ctx


def main() -> None:
    args = parse()
    started, date = time.perf_counter(), dt.date.today().isoformat()
    rows: list[Row] = []
    load = LoadSampler()
    with tempfile.TemporaryDirectory(prefix="dreamsweep-bench-") as tmp, load.running():
        ctx = prepare(args, Path(tmp))
        for name, section in SECTIONS.items():
            if args.only and name not in args.only:
                continue
            print(f"{name} ...", flush=True)
            section_started = time.perf_counter()
            produced = section(ctx)
            for row in [produced] if isinstance(produced, Row) else produced:
                rows.append(row)
                if name != "step":  # step rows print as they come
                    print(_progress(row), flush=True)
            print(f"{name}: {time.perf_counter() - section_started:.0f} s", flush=True)
    meta = {
        "date": date,
        "quick": args.quick,
        "wall_seconds": time.perf_counter() - started,
        "load_1min": load.summary(),
        "machine": machine(args),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report = {**meta, "rows": [r.as_json() for r in rows]}
    (args.out / f"{date}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"{date}.md").write_text(markdown(rows, meta))
    print(markdown(rows, meta))
    print(f"wrote {args.out / f'{date}.json'} and .md")


if __name__ == "__main__":
    main()
