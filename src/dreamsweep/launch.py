"""Start the worker of one run as a subprocess: plain Python, or `accelerate launch`.

One subprocess per run: Accelerate's state is per process, GPU memory is
freed between runs, and a Hydra sweep is never run under `accelerate launch`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from hydra.types import RunMode
from omegaconf import OmegaConf

from dreamsweep import atomic
from dreamsweep.cells import (
    eval_steps,
    planned_cells,
    samplings,
    scored_weights,
    steps_beyond_training,
)
from dreamsweep.config import ConfigError, RunConfig, load_config, save_yaml
from dreamsweep.console import end_line
from dreamsweep.data.dataset import check_data
from dreamsweep.preflight import check_places
from dreamsweep.runs import (
    COMPLETE,
    EXIT_STORAGE_ERROR,
    FAILED,
    PRUNED,
    RunPaths,
    read_json,
    write_result,
)

log = logging.getLogger("dreamsweep")

WORKER_MODULE = "dreamsweep.worker"
# Hydra launchers that run a sweep's jobs side by side on this machine (by _target_ suffix):
# hydra/launcher=submitit_local and joblib.
PARALLEL_LOCAL_LAUNCHERS = ("submitit_launcher.LocalLauncher", "joblib_launcher.JoblibLauncher")


class RunFailed(RuntimeError):
    """The worker ended without completing; result.json says why. ``shown``: the worker has
    already printed the one `error:` line (a full disk), so it is not printed again."""

    def __init__(self, message: str, shown: bool = False) -> None:
        super().__init__(message)
        self.shown = shown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker_command(cfg: RunConfig, config_file: Path) -> list[str]:
    """The command line that runs the worker with the launcher group's settings."""
    la = cfg.launcher
    if la.num_processes == 1:
        return [sys.executable, "-m", WORKER_MODULE, str(config_file)]
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        str(la.num_processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        la.mixed_precision,
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(la.main_process_port or free_port()),
    ]
    # torchrun-style launch; without CUDA each rank is a CPU process on the gloo backend.
    # The GPUs of the run are chosen by worker_env (CUDA_VISIBLE_DEVICES), not --gpu_ids.
    cmd += ["--multi_gpu"]
    return cmd + ["-m", WORKER_MODULE, str(config_file)]


def worker_env(cfg: RunConfig, threads: int | None = None) -> dict[str, str]:
    """The worker's environment: pinned to launcher.gpu_ids ("2,3"), so that runs side by side
    (an Optuna sweep's n_jobs) never share a GPU ("all" or unset leaves the GPUs as they are),
    with `threads` CPU threads per process (torch reads OMP_NUM_THREADS when it starts)."""
    env = dict(os.environ)
    if cfg.launcher.gpu_ids not in (None, "all"):
        env["CUDA_VISIBLE_DEVICES"] = str(cfg.launcher.gpu_ids)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
        env.setdefault("MKL_NUM_THREADS", str(threads))
        if threads > 1:  # waiting threads sleep instead of spinning: cores that turn out busy
            env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # then cost ~2x, not ~10x
    return env


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity (taskset, a SLURM allocation)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def runs_side_by_side(hydra_cfg, cores: int | None = None) -> int:
    """How many runs of this command train at once on this machine. One, unless a sweep's
    jobs run in parallel here (hydra/launcher=submitit_local or joblib): then the sweeper's
    or the launcher's n_jobs, or one per core when neither says (a grid starts all its jobs
    at once). Hydra's basic launcher runs jobs one after another; SLURM jobs get their own
    cores (their affinity)."""
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return 1
    if not str(hydra_cfg.launcher.get("_target_", "")).endswith(PARALLEL_LOCAL_LAUNCHERS):
        return 1
    n_jobs = hydra_cfg.sweeper.get("n_jobs") or hydra_cfg.launcher.get("n_jobs") or 0
    return n_jobs if n_jobs > 0 else (cores or available_cores())


def cpu_threads(
    num_processes: int,
    side_by_side: int,
    cores: int,
    busy: float = 0.0,
) -> tuple[int, str]:
    """CPU threads for each process of a run that has none chosen yet, and why. The run's
    share of the free cores: (cores - cores kept busy by other processes, the 1-minute load
    average) / (runs side by side x processes of the run), at least 1. More is worse than
    fewer: OpenMP threads spin on cores that other processes keep busy, and two threads next
    to a busy process on two cores make a step many times slower."""
    free = max(1, cores - round(busy))
    share = max(1, free // (side_by_side * num_processes))
    why = (
        f"{free} free of {cores} core(s) / ({side_by_side} run(s) side by side x "
        f"{num_processes} process(es))"
    )
    return share, why


@dataclass(frozen=True)
class Threads:
    """The CPU threads per process of one start of a run. `record`: the count config.yaml
    keeps as launcher.threads (the first start's: a resume uses it); `to_set`: the worker's
    OMP_NUM_THREADS (None: the user's stands); `why`: the log line; `warn`: it says that
    this start cannot use the recorded or asked count."""

    record: int | None
    to_set: int | None
    why: str
    warn: bool = False


def run_threads(
    asked: int | None,
    recorded: int | None,
    env: Mapping[str, str],
    policy: Callable[[], tuple[int, str]],
) -> Threads:
    """How many CPU threads this start of a run uses. Results depend on the count (float
    sums split across threads), so a resume keeps the count its run started with (`recorded`,
    config.yaml's launcher.threads) unless told otherwise: by launcher.threads on the command
    line (`asked`) or OMP_NUM_THREADS in the environment (which always stands: torch reads it),
    and then one warning line says so. A first start takes `asked`, else the policy's share."""
    first = "(as this run started: its config.yaml launcher.threads)"
    wanted, source = (asked, "(launcher.threads)") if asked is not None else (recorded, first)
    if "OMP_NUM_THREADS" in env:
        value = env["OMP_NUM_THREADS"]
        count = int(value) if value.strip().isdigit() and int(value) > 0 else None
        keep = recorded if recorded is not None else count
        why = f"OMP_NUM_THREADS={value} as set"
        if wanted is not None and count != wanted:
            why += f", not {wanted} {source}: {_may_differ(wanted, 'unset OMP_NUM_THREADS')}"
            return Threads(keep, None, why, warn=True)
        return Threads(keep, None, why)
    if asked is not None and recorded is not None and asked != recorded:
        why = f"{asked} (launcher.threads), not {recorded} {first}: "
        why += _may_differ(recorded, "leave launcher.threads out")
        return Threads(recorded, asked, why, warn=True)
    if wanted is not None:
        return Threads(wanted, wanted, f"{wanted} {source}")
    count, why = policy()
    return Threads(count, count, f"{count} = {why}")


def _may_differ(expected: int, remedy: str) -> str:
    return (
        f"results may differ in the last bits from a run on {expected} thread(s); {remedy} "
        f"to use {expected}"
    )


def recorded_threads(paths: RunPaths) -> int | None:
    """launcher.threads of the config.yaml a run folder already holds (a resume), else None."""
    if not paths.config.exists():
        return None
    return OmegaConf.select(OmegaConf.load(paths.config), "launcher.threads", default=None)


def gpu_slots(n_jobs: int, gpus_per_job: int, devices: int) -> list[str] | None:
    """launcher.gpu_ids for each of n_jobs runs side by side, each on its own GPUs; None when
    there are too few GPUs for that (then the runs are not pinned)."""
    if n_jobs < 2 or devices < n_jobs * gpus_per_job:
        return None
    return [
        ",".join(str(g) for g in range(i * gpus_per_job, (i + 1) * gpus_per_job))
        for i in range(n_jobs)
    ]


def write_run_config(cfg: RunConfig, run_dir: Path) -> Path:
    """config.yaml of the run; an existing folder must hold the same training settings (a
    resume). Where the cache lives, which GPUs and port and how many CPU threads the run uses
    are not training settings: a resume takes this command's (a new DREAMSWEEP_CACHE_DIR is
    honoured; run_threads keeps the first start's thread count). Neither is the Optuna trial
    it reports to: the retry of a trial whose worker died continues the run as a new trial."""
    paths = RunPaths(run_dir)
    if paths.config.exists():
        previous = load_config(OmegaConf.load(paths.config), check_machine=False)
        previous = dataclasses.replace(
            previous,
            cache_dir=cfg.cache_dir,
            optuna=cfg.optuna,
            launcher=dataclasses.replace(
                previous.launcher,
                gpu_ids=cfg.launcher.gpu_ids,
                main_process_port=cfg.launcher.main_process_port,
                threads=cfg.launcher.threads,  # run_training keeps the first start's
            ),
        )
        if save_yaml(previous) != save_yaml(cfg):
            raise ConfigError(
                f"{run_dir} already holds a run with other settings ({paths.config}); resume it "
                "with the same command, or choose a new hydra.run.dir"
            )
    atomic.write_text(paths.config, save_yaml(cfg))
    return paths.config


def record_failure(run_dir: Path, err: Exception) -> None:
    """A sweep job that failed before its worker wrote anything (a bad setting, bad photos):
    result.json says why, so the sweep's report shows the run as failed instead of missing.
    On a full disk this cannot be written either; the next reader finds the run stale."""
    paths = RunPaths(run_dir)
    with suppress(OSError):
        if (read_json(paths.result) or {}).get("state") != FAILED:
            write_result(paths, FAILED, final_step=None, error=str(err))


def run_training(cfg: RunConfig, run_dir: Path, side_by_side: int = 1) -> float | None:
    """Write the run's config, run (or resume) the worker, return the objective.
    side_by_side: how many runs share this machine's cores (runs_side_by_side)."""
    paths = RunPaths(run_dir)
    check_places(cfg, run_dir)  # model path, cache and run folder: one line each, nothing loaded
    if beyond := steps_beyond_training(cfg):
        log.warning(
            "eval.at_steps %s are beyond train.max_steps=%d and will not be scored",
            beyond,
            cfg.train.max_steps,
        )
    check_data(cfg)  # every bad image listed now, not after the model has loaded
    procs = cfg.launcher.num_processes
    threads = run_threads(
        cfg.launcher.threads,
        recorded_threads(paths),
        os.environ,
        lambda: cpu_threads(procs, side_by_side, available_cores(), busy=os.getloadavg()[0]),
    )
    cfg = dataclasses.replace(
        cfg, launcher=dataclasses.replace(cfg.launcher, threads=threads.record)
    )
    config_file = write_run_config(cfg, run_dir)
    previous = read_json(paths.result) or {}
    if previous.get("state") == COMPLETE:
        log.info("%s is already complete; nothing to do", run_dir)
        return previous.get("objective")
    cmd = worker_command(cfg, config_file)
    cells = planned_cells(cfg)
    log.info(
        "run folder: %s; %d cells planned (steps %s x %d sampling setting(s) x weights %s)",
        run_dir,
        len(cells),
        eval_steps(cfg),
        len(samplings(cfg)),
        scored_weights(cfg),
    )
    (log.warning if threads.warn else log.info)("CPU threads per process: %s", threads.why)
    code = subprocess.call(cmd, env=worker_env(cfg, threads.to_set))
    result = read_json(paths.result) or {}
    if result.get("state") in (COMPLETE, PRUNED):
        print(end_line(run_dir, result), flush=True)
    if code == 0 and result.get("state") == PRUNED:
        log.info("run pruned: %s", result.get("pruned"))
        return result.get("objective")
    if code == EXIT_STORAGE_ERROR:
        raise RunFailed(result.get("error") or "the disk is full or not writable", shown=True)
    if code != 0 or result.get("state") != COMPLETE:
        if result.get("state") != FAILED:  # killed, or a rank died before writing
            result = write_result(paths, FAILED, error=f"worker exited with code {code}")
        raise RunFailed(f"run failed: {result.get('error')} (see {paths.result})")
    return result.get("objective")
