"""The benchmark's sections: each measures one comparison (or a family of rows) in one run.

What each row measures is in its section's docstring and in the row's `detail`.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable

import yaml
from processes import (
    HERE,
    ROOT,
    Context,
    Finished,
    Side,
    interleaved,
    must_finish,
    run_overrides,
)
from rows import Row, Target, progress_line
from sampling_rows import sampling_rows
from sections_xl import XL_SECTIONS
from sweep_folders import (
    best_of_study,
    compare_cells,
    count_cells,
    images_sampled,
    read_runs,
    run_seconds,
    state_counts,
    sum_steps,
    winner,
    winner_objective,
)

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
            print(progress_line(rows[-1]), flush=True)
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


def eval_rows(ctx: Context) -> list[Row]:
    """Evaluation sampling per image: ours vs one StableDiffusionPipeline call per image.

    Ours: dreamsweep.evaluation.sampling.generate over the first cell's jobs of a run (its
    scheduler, steps, guidance, resolution, batch size): the tiny model at the benchmark's
    resolution, and the toy world as it ships (`model=toyworld`, the default demo). Baseline:
    the same jobs, one plain pipeline call each with the same scheduler class, steps, guidance,
    resolution and seeds, from the same weights.
    """
    models = [
        (["--model=tiny"], f"tiny, {ctx.args.resolution} px"),
        (["--model=toyworld"], "toy world"),
    ]
    return sampling_rows(ctx, models, "evaluation sampling per image vs plain pipeline calls")


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
    states = {name: state_counts(runs) for name, runs in (("pruned", p_runs), ("unpruned", u_runs))}
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


def adaptive_rows(ctx: Context) -> list[Row]:
    """The demo grid with adaptive evaluation (eval.adaptive=true) vs every seed for every cell.

    `python train.py -m +sweep=demo tracker=disk [eval.adaptive=true]`, each in its own sweep
    folder and cache. Images: sample PNGs the cells wrote (step 0 always gets every seed).
    Winner: the best trained cell (settings, step, cell) by the tie rule, in both sweeps.
    --quick: QUICK_GRID with 8 seeds in blocks of 2.
    """
    quick = [*QUICK_GRID[:3], "eval.num_inference_steps=[10]", "eval.seeds=[0,1,2,3,4,5,6,7]"]
    extra = [*quick, "eval.adaptive_block=2"] if ctx.quick else []
    sweeps = {}
    for name, setting in (("adaptive", ["eval.adaptive=true"]), ("full", [])):
        out = ctx.tmp / f"adaptive-{name}"
        cmd = [
            sys.executable, "train.py", "-m", "+sweep=demo", "tracker=disk", *extra, *setting,
            f"hydra.sweep.dir={out / 'sweep'}",
        ]  # fmt: skip
        with ctx.log_file(f"adaptive-{name}") as log:
            done = must_finish(cmd, ctx.env(out / "cache"), log)
        runs = read_runs(out / "sweep")
        sweeps[name] = (done, images_sampled(out / "sweep"), winner(runs))
    (a_done, a_images, a_best), (f_done, f_images, f_best) = sweeps["adaptive"], sweeps["full"]
    detail = f"winner adaptive {a_best} vs full {f_best}" + (
        f" (--quick: {' '.join(extra)})" if ctx.quick else ""
    )
    return [
        Row("demo grid images sampled: adaptive vs full evaluation", "images", a_images,
            f_images, Target("<=", 0.60), detail=detail),
        Row("demo grid wall time: adaptive vs full evaluation", "s", a_done.seconds,
            f_done.seconds, None, a_done.peak_mb, f_done.peak_mb, detail),
        Row("demo grid: the same best cell with adaptive evaluation", "cells",
            float(a_best == f_best), 1.0, Target("==", 1.0), detail=detail),
    ]  # fmt: skip


def next_rows(ctx: Context) -> list[Row]:
    """`dreamsweep next` on a too-low LR grid: does the proposed sweep find a better cell?

    First: `+sweep=toyworld_lr_steps optim.lr=1e-5,3e-5 train.max_steps=100,200,400` (the best
    LR at the upper edge, its curve still rising). Then `dreamsweep next <first>` writes a
    preset into a scratch copy of conf/, and the proposed sweep runs as written. Best
    objective: the best trained cell of each sweep. --quick: 8 seeds per prompt.
    """
    seeds = "eval.seeds=${range:8}" if ctx.quick else "eval.seeds=${range:16}"
    conf = ctx.tmp / "next-conf"  # a config dir beside conf/ that holds just the proposal
    preset = conf / "sweep" / "next-lr.yaml"
    preset.parent.mkdir(parents=True)
    first, second = ctx.tmp / "next-first", ctx.tmp / "next-second"
    cmd = [
        sys.executable, "train.py", "-m", "+sweep=toyworld_lr_steps", "optim.lr=1e-5,3e-5",
        "train.max_steps=100,200,400", seeds, "tracker=disk",
        f"hydra.sweep.dir={first}",
    ]  # fmt: skip
    with ctx.log_file("next-first") as log:
        first_done = must_finish(cmd, ctx.env(ctx.tmp / "next-cache"), log)
        proposal = must_finish(
            [sys.executable, "-m", "dreamsweep.cli", "next", str(first), "--out", str(preset)],
            ctx.env(ctx.tmp / "next-cache"),
            log,
        )
    cmd = [
        sys.executable, "train.py", "-m", "--config-dir", str(conf), f"+sweep={preset.stem}",
        "tracker=disk", f"hydra.sweep.dir={second}",
    ]  # fmt: skip
    with ctx.log_file("next-second") as log:
        second_done = must_finish(cmd, ctx.env(ctx.tmp / "next-cache"), log)
    best = {name: winner_objective(read_runs(folder)) for name, folder in
            (("first", first), ("second", second))}  # fmt: skip
    header = [line[2:] for line in preset.read_text().splitlines() if line.startswith("# - ")]
    return [
        Row("dreamsweep next: best objective, proposed sweep vs the first", "objective",
            best["second"], best["first"], Target(">", 1.0),
            detail="; ".join(header) + f" (wall {first_done.seconds:.0f} s + "
            f"{proposal.seconds:.0f} s + {second_done.seconds:.0f} s)"),
    ]  # fmt: skip


def workers_rows(ctx: Context) -> list[Row]:
    """Search wall time: independent workers vs batches, 2 at a time, same trial budget.

    Both sides search `+sweep=demo_search` (median pruner, toy world, tracker=disk) with a
    sqlite study of their own. Batches: `python train.py -m ... hydra.sweeper.n_jobs=2
    hydra/launcher=submitit_local` (asks 2 trials, waits for both, tells, asks again).
    Workers: `dreamsweep worker --slots 2 ...` (each asks its next trial as soon as its own
    ends). Wall: the command's. Idle worker-time: 2 x wall - the sum of every run's time
    (config.yaml written -> last metrics.jsonl line), as a share of 2 x wall. --quick:
    QUICK_SEARCH.
    """
    extra = QUICK_SEARCH if ctx.quick else []
    common = ["+sweep=demo_search", "tracker=disk", *extra]
    sides = {
        "workers": [sys.executable, "-m", "dreamsweep.cli", "worker", "--slots", "2"],
        "batches": [sys.executable, "train.py", "-m", "hydra.sweeper.n_jobs=2",
                    "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=600"],
    }  # fmt: skip
    measured = {}
    for name, command in sides.items():
        out = ctx.tmp / f"workers-{name}"
        out.mkdir(parents=True)
        cmd = [*command, *common, f"hydra.sweeper.storage=sqlite:///{out / 'study.db'}",
               f"hydra.sweep.dir={out / 'sweep'}"]  # fmt: skip
        with ctx.log_file(f"workers-{name}") as log:
            done = must_finish(cmd, ctx.env(out / "cache"), log)
        busy = sum(run_seconds(out / "sweep"))
        idle = max(0.0, 2 * done.seconds - busy) / (2 * done.seconds)
        measured[name] = (done, idle, state_counts(read_runs(out / "sweep")))
    (w_done, w_idle, w_states), (b_done, b_idle, b_states) = (
        measured["workers"], measured["batches"]
    )  # fmt: skip
    detail = (
        f"2 at a time; trials {w_states} vs {b_states}; idle worker-time {w_idle:.0%} vs "
        f"{b_idle:.0%} of 2 x wall" + (f" (--quick: {' '.join(QUICK_SEARCH)})" if ctx.quick else "")
    )
    return [
        Row(
            "search wall time: independent workers vs batches",
            "s",
            round(w_done.seconds, 1),
            round(b_done.seconds, 1),
            Target("<=", 1.0),
            w_done.peak_mb,
            b_done.peak_mb,
            detail,
        ),
        Row(
            "search idle worker-time: independent workers vs batches",
            "% of 2 x wall",
            round(100 * w_idle, 1),
            round(100 * b_idle, 1),
            None,
            detail="the issue's target: workers idle <= 10%",
        ),
    ]


SECTIONS: dict[str, Callable[[Context], Row | list[Row]]] = {
    "step": step_rows,
    "startup": startup_row,
    "eval": eval_rows,
    "grid": grid_rows,
    "search": search_rows,
    "adaptive": adaptive_rows,
    "next": next_rows,
    "workers": workers_rows,
    **XL_SECTIONS,
}
