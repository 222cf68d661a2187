"""The Optuna sweep loop: ask trials, launch one run per trial, tell Optuna how each ended.

The search space comes from Hydra's override grammar (`a,b,c` / `choice(...)`, `range(...)`,
`interval(...)`, `tag(log, interval(...))`) on the command line and in
`hydra.sweeper.params`. Each job gets its trial's id (`optuna.*` keys), reports its objective
at every evaluation and stops when the pruner says so. A run's result.json says how it ended;
failed runs are told FAIL and the sweep goes on until `max_failure_rate` is exceeded.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf

from dreamsweep.cells import EMA_AXIS
from dreamsweep.launch import gpu_slots
from dreamsweep.runs import (
    COMPLETE,
    FAILED,
    PRUNED,
    RUNNING,
    RunPaths,
    read_json,
    update_result,
    write_result,
)
from dreamsweep.secrets import STORAGE_ENV, mask_url
from dreamsweep.sweeps.search_space import (
    conditional_params,
    conditional_space,
    override_value,
    short_key,
    split_overrides,
)
from dreamsweep.sweeps.settings import OptunaSweeperConfig
from dreamsweep.sweeps.study import (
    claim,
    create_or_load,
    default_storage,
    fail_stale_trials,
    make_pruner,
    make_sampler,
)

log = logging.getLogger("dreamsweep.sweep")
TrialState = optuna.trial.TrialState


def typed_settings(settings: dict[str, Any]) -> OptunaSweeperConfig:
    """`hydra.sweeper.*` as the plugin's typed dataclass (plain containers inside)."""
    plain = {
        k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
        for k, v in settings.items()
        if k != "_target_"
    }
    return OptunaSweeperConfig(**plain)


@dataclass
class Search:
    """What running any trial of a study needs: the study, its settings, the search space,
    where run folders go and the overrides that link a run to its trial. One per sweep or
    worker process."""

    study: optuna.Study
    settings: OptunaSweeperConfig
    distributions: dict[str, Any]
    fixed: list[str]
    conditional: dict
    grid: dict[str, list] | None
    n_trials: int
    link: list[str]
    sweep_dir: Path
    shown: str
    cfg: Any
    launcher: Any


def open_search(
    sweeper, s: OptunaSweeperConfig, arguments: list[str], rdb_kwargs: dict | None = None
) -> Search:
    """The study (created or loaded) and the search space of this command."""
    cfg = sweeper.config
    params = [f"{k}={v}" for k, v in s.params.items()] + list(arguments)
    distributions, fixed, grid = split_overrides(params, sweeper.hydra_context.config_loader)
    conditional = conditional_space(s.conditional, sweeper.hydra_context.config_loader)
    if conditional and grid is not None:
        grid = None  # a conditional space is not a grid: the sampler asks as usual
    if conditional and s.sampler == "grid":
        raise SystemExit("error: hydra.sweeper.conditional needs a sampler other than grid")
    study_name = s.study_name or cfg.get("sweep_name") or "dreamsweep"
    storage = (
        s.storage
        or os.environ.get(STORAGE_ENV)
        or default_storage(Path(cfg.hydra.runtime.cwd) / "outputs", study_name)
    )
    os.environ[STORAGE_ENV] = storage  # the jobs connect with it; files only see `shown`
    shown = mask_url(storage)
    study = create_or_load(
        study_name,
        storage,
        rdb_kwargs,
        sampler=make_sampler(s.sampler, s.seed, grid, s.sampler_kwargs),
        pruner=make_pruner(s.pruner, s.pruner_kwargs),
        directions=list(s.directions),
    )
    _describe(study, s.objectives, Path(cfg.hydra.sweep.dir))
    link = [
        f"optuna.storage={override_value(shown)}",
        f"optuna.study_name={override_value(study_name)}",
        f"optuna.pruner={s.pruner}",
        f"++optuna.pruner_kwargs={override_value(s.pruner_kwargs or {})}",
    ]
    n_trials = s.n_trials if grid is None else min(s.n_trials, _grid_size(grid))
    return Search(
        study, s, distributions, fixed, conditional, grid, n_trials, link,
        Path(cfg.hydra.sweep.dir), shown, cfg, sweeper.launcher,
    )  # fmt: skip


def run_sweep(sweeper, arguments: list[str]) -> list:
    search = open_search(sweeper, typed_settings(sweeper.settings), arguments)
    study, s, grid, n_trials = search.study, search.settings, search.grid, search.n_trials
    if stale := fail_stale_trials(study):
        for trial in stale:
            _mark_interrupted(trial)
        log.warning("marked %d trial(s) left running by an interrupted sweep as FAIL", len(stale))
    log.info(
        "study '%s' in %s: %d of %d trials done",
        study.study_name, search.shown, _finished(study), n_trials,
    )  # fmt: skip
    failed_before = _failed(study)  # a resumed sweep judges only its own failures
    returns = []
    while (todo := n_trials - _finished(study)) > 0:
        if grid is not None and len(study.trials) >= _grid_size(grid):
            break  # every grid point has been tried
        trials = [study.ask(search.distributions) for _ in range(min(s.n_jobs, todo))]
        returns.append(run_trials(search, trials))
        _check_failure_rate(_failed(study) - failed_before, s.max_failure_rate, n_trials)
    _write_results(study, search.sweep_dir, search.shown)
    return returns


def run_trials(search: Search, trials: list[optuna.Trial]) -> list:
    """Run one run per trial (side by side under a parallel launcher) and tell the study how
    each ended: the one path of a trial, for the batch sweeper and for `dreamsweep worker`."""
    pins = _pins(search.cfg, len(trials))
    batch = [job_overrides(search, t, pin) for t, pin in zip(trials, pins, strict=True)]
    # job numbers are trial numbers; the folders are claimed, never counted
    results = search.launcher.launch(batch, initial_job_idx=trials[0].number)
    for trial, job in zip(trials, results, strict=True):
        _tell(search.study, trial, job, search.settings, search.shown)
    return results


def job_overrides(search: Search, trial: optuna.Trial, pin: list[str]) -> list[str]:
    """The overrides of a trial's run. A trial that already has a run folder (a retry of a
    trial whose worker died, or a grid run put in the queue) continues it, under its first
    name; any other gets a new folder named by its number."""
    attrs, values = trial.user_attrs, {}
    if "overrides" in attrs:  # an enqueued grid run (sweeps/pool.py)
        run = list(attrs["overrides"])
    else:
        values = {k: trial.params[k] for k in search.distributions}
        values.update(conditional_params(trial, search.conditional))
        run = [*search.fixed, *(f"{k}={v}" for k, v in values.items())]
        run += _weights_it_stands_for(trial.params)
    folder, place = claim(trial, search.sweep_dir), []
    if folder.parent.resolve() != search.sweep_dir.resolve():
        place = [f"hydra.sweep.dir={override_value(str(folder.parent))}"]
    if not (name := attrs.get("run_name")):  # a retry copies it: the run keeps its W&B name
        name = _trial_name(trial.number, values)
        trial.set_user_attr("run_name", name)
    return [
        *run,
        *search.link,
        f"optuna.trial_number={trial.number}",
        *place,
        f"hydra.sweep.subdir={override_value(folder.name)}",
        f"run_name={override_value(name)}",
        *pin,
    ]


def _trial_name(number: int, values: dict[str, Any]) -> str:
    """`#3 lr=2.1e-06 text_encoder=true`: the trial and what it tries (W&B run names)."""
    shown = " ".join(
        f"{short_key(k)}={v:.2g}" if isinstance(v, float) else f"{short_key(k)}={v}"
        for k, v in values.items()
    )
    return f"#{number} {shown}".strip()


def _pins(cfg, n_jobs: int) -> list[list[str]]:
    """Runs side by side get GPUs of their own (launcher.gpu_ids); each already gets a port of
    its own (launch.free_port). Without enough GPUs they are not pinned."""
    import torch

    slots = gpu_slots(n_jobs, cfg.launcher.num_processes, torch.cuda.device_count())
    if slots is None:
        if n_jobs > 1 and torch.cuda.is_available():
            log.warning(
                "%d runs side by side need %d GPUs each; they will share the %d visible GPUs",
                n_jobs,
                cfg.launcher.num_processes,
                torch.cuda.device_count(),
            )
        return [[] for _ in range(n_jobs)]
    return [[f"launcher.gpu_ids='{ids}'"] for ids in slots]


def _weights_it_stands_for(params: dict[str, Any]) -> list[str]:
    """A trial that searches ema.enabled is scored only with the weights it stands for: an EMA
    run also scores its raw weights (identical to the run without EMA), so counting those
    would let ema.enabled=true never lose. Without the param, a run scores both."""
    if EMA_AXIS not in params:
        return []
    return ["eval.weights=[ema]" if params[EMA_AXIS] in (True, "true") else "eval.weights=[raw]"]


def _finished(study: optuna.Study) -> int:
    """Trials that count toward n_trials; failed ones are retried, within max_failure_rate."""
    states = (TrialState.COMPLETE, TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def _grid_size(grid: dict[str, list]) -> int:
    size = 1
    for values in grid.values():
        size *= len(values)
    return size


def _tell(
    study: optuna.Study, trial: optuna.Trial, job, s: OptunaSweeperConfig, storage: str
) -> None:
    """Read the run's result.json; link trial and run folder both ways."""
    run_dir = Path(job.hydra_cfg.hydra.runtime.output_dir)
    paths = RunPaths(run_dir)
    result = read_json(paths.result) or {}
    trial.set_user_attr("run_dir", str(run_dir))
    if result.get("objective_interval"):  # the value told stays the best cell's objective
        trial.set_user_attr("objective_interval", result["objective_interval"])
    if paths.result.exists():
        update_result(
            paths, optuna={"study": study.study_name, "trial": trial.number, "storage": storage}
        )
    state, values = result.get("state"), None
    if state == COMPLETE:
        values = [_objective_value(result, k) for k in s.objectives]
    try:
        if state == COMPLETE and all(v is not None for v in values):
            study.tell(trial, values, skip_if_finished=True)
            log.info("trial %d complete: %s = %s", trial.number, s.objectives, values)
        elif state == PRUNED:
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            log.info("trial %d pruned at step %s", trial.number, result.get("final_step"))
        else:
            log.warning("trial %d failed: %s", trial.number, result.get("error"))
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    except RuntimeError as err:  # GridSampler stops the study after its last cell
        if "Study.stop" not in str(err):
            raise


def _describe(study: optuna.Study, objectives: list[str], sweep_dir: Path) -> None:
    """What a dashboard shows: the objectives' names (not "Objective 0") and the sweep
    folders that hold the study's runs."""
    if len(objectives) == len(study.directions):
        study.set_metric_names(list(objectives))
    folders = list(study.user_attrs.get("sweep_dirs", []))
    if str(sweep_dir.resolve()) not in folders:
        study.set_user_attr("sweep_dirs", [*folders, str(sweep_dir.resolve())])
    command = mask_url(" ".join(["python", *sys.argv]))  # the storage password never stored
    commands = list(study.user_attrs.get("commands", []))
    if command not in commands:
        study.set_user_attr("commands", [*commands, command])


def _mark_interrupted(trial: optuna.trial.FrozenTrial) -> None:
    """The run folder of a trial whose sweep process died says so, as its trial does."""
    run_dir = trial.user_attrs.get("run_dir")
    if not run_dir:
        return
    paths = RunPaths(Path(run_dir))
    if (read_json(paths.result) or {}).get("state") in (None, RUNNING):
        write_result(
            paths,
            FAILED,
            error=f"interrupted: the sweep process running trial {trial.number} was killed "
            "(the trial is marked FAIL; a new trial retries its settings if the sampler asks)",
        )


def _objective_value(result: dict, key: str) -> float | None:
    """A run's value for one of hydra.sweeper.objectives: `objective` (its best cell's),
    a score of its best cell (`eval/dino`), or a validation loss of its last evaluation
    (`val/class_loss`, `val/class_train_loss`, `val/instance_loss`, `val/held_out_loss`;
    direction minimize)."""
    if key == "objective":
        return result.get("objective")
    if key.startswith("val/"):
        return (result.get("val") or {}).get(key)
    return (result.get("best") or {}).get(key)


def _failed(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))


def _check_failure_rate(failed: int, max_rate: float, n_trials: int) -> None:
    """Stop when this sweep's failures exceed max_rate x n_trials (a broken setting, not bad
    luck); trials that failed before a resume do not count."""
    if failed > max_rate * n_trials:  # one line and exit code 1, no traceback
        raise SystemExit(
            f"error: {failed} trials failed, more than hydra.sweeper.max_failure_rate={max_rate} "
            f"of n_trials={n_trials}; see the runs' result.json for why"
        )


def _write_results(study: optuna.Study, sweep_dir: Path, storage: str) -> None:
    """Print the best trial (or the Pareto front) and write optimization_results.yaml."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    best = (
        (study.best_trials if len(study.directions) > 1 else [study.best_trial]) if complete else []
    )
    summary = {
        "study_name": study.study_name,
        "storage": storage,
        "trials": {
            state.name.lower(): sum(t.state == state for t in study.trials)
            for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
        },
        "best": [
            {
                "number": t.number,
                "values": t.values,
                "params": t.params,
                "run_dir": t.user_attrs.get("run_dir"),
            }
            for t in best
        ],
    }
    OmegaConf.save(OmegaConf.create(summary), sweep_dir / "optimization_results.yaml")
    for t in best:
        log.info(
            "best trial %d: %s %s -> %s", t.number, t.values, t.params, t.user_attrs.get("run_dir")
        )
