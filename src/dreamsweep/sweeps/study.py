"""Optuna studies for sweeps: storage, samplers and pruners by name, and telling results.

Shared by the sweeper plugin (asks and tells) and the worker (reports and asks whether to
prune). The pruner is not stored in the study, so both build it from the same settings.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna

from dreamsweep.atomic import alive, owner
from dreamsweep.secrets import real_storage

PRUNERS = ("median", "hyperband", "successive_halving", "patient", "none")
SAMPLERS = ("tpe", "random", "gp", "grid", "nsga2")


def make_pruner(name: str, kwargs: dict[str, Any] | None = None) -> optuna.pruners.BasePruner:
    kwargs = dict(kwargs or {})
    if name == "median":
        return optuna.pruners.MedianPruner(**kwargs)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(**kwargs)
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**kwargs)
    if name == "patient":
        wrapped = make_pruner(kwargs.pop("wrapped", "median"), kwargs.pop("wrapped_kwargs", {}))
        return optuna.pruners.PatientPruner(wrapped, **{"patience": 1, **kwargs})
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"hydra.sweeper.pruner: unknown '{name}'; known: {', '.join(PRUNERS)}")


def make_sampler(
    name: str,
    seed: int | None,
    search_space: dict[str, list] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The sampler by name. With a seed, each trial draws from a seed of its own (see
    TrialSeeded), so workers on one study and resumed sweeps never repeat each other."""
    if seed is None or name == "grid":  # GridSampler already picks its cell by trial number
        return _sampler(name, seed, search_space, kwargs)
    return TrialSeeded(lambda trial_seed: _sampler(name, trial_seed, search_space, kwargs), seed)


def _sampler(
    name: str,
    seed: int | None,
    search_space: dict[str, list] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    kwargs = dict(kwargs or {})
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **kwargs)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **kwargs)
    if name == "grid":
        return optuna.samplers.GridSampler(search_space or {}, seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, **kwargs)
    raise ValueError(f"hydra.sweeper.sampler: unknown '{name}'; known: {', '.join(SAMPLERS)}")


class TrialSeeded(optuna.samplers.BaseSampler):
    """A sampler re-seeded for every trial from (seed, trial number).

    A seeded sampler proposes the same values in every process that starts with the same
    history: two workers on one study, or a killed sweep that is started again, would train
    the same configuration twice. Trial numbers are unique in a study (the storage assigns
    them), so seeding by them keeps a one-process sweep reproducible and makes every worker's
    draws its own. Samplers here keep no state between trials except their random state.
    """

    def __init__(self, build, seed: int) -> None:
        self._build, self._seed = build, seed
        self._sampler = build(seed)

    def trial_seed(self, number: int) -> int:
        return (self._seed * 1_000_003 + number) % 2**32

    def before_trial(self, study, trial) -> None:
        self._sampler = self._build(self.trial_seed(trial.number))
        self._sampler.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._sampler.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._sampler.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._sampler.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._sampler.reseed_rng()


def default_storage(outputs_root: Path, study_name: str) -> str:
    """A SQLite file at a stable path: running the same command again resumes the study."""
    path = (outputs_root / "optuna" / f"{study_name}.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_object(url: str, rdb_kwargs: dict[str, Any] | None = None):
    """RDB URLs as they are; `journal:<file>` for a journal file on a shared filesystem. A URL
    whose password is masked (secrets.py) is swapped for the real one from the environment.
    rdb_kwargs (heartbeat settings) make an RDBStorage; the journal storage takes none (it
    has no heartbeats in Optuna 5)."""
    url = real_storage(url)
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    if rdb_kwargs:
        return optuna.storages.RDBStorage(url, **rdb_kwargs)
    return url


def create_or_load(
    study_name: str, storage: str, rdb_kwargs: dict[str, Any] | None = None, **kwargs
) -> optuna.Study:
    """create_study(load_if_exists=True), retried: two sweep processes starting together on a
    fresh storage race to create its tables and the study."""
    for attempt in range(5):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage_object(storage, rdb_kwargs),
                load_if_exists=True,
                **kwargs,
            )
        except Exception:  # sqlalchemy/optuna errors of the losing process
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def claim(trial: optuna.Trial, sweep_dir: Path) -> Path:
    """Record which sweep process runs a trial (so a resuming sweep can tell stale from live)
    and give it a run folder of its own, named by its trial number and created atomically:
    workers sharing a sweep folder, or a study reusing one, never write into each other's.
    A trial that comes with a folder (the retry of a trial whose worker died, a queued grid
    run) keeps it: its run resumes there."""
    trial.set_user_attr("sweeper", owner())
    if run_dir := trial.user_attrs.get("run_dir"):
        return Path(run_dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1000):
        folder = sweep_dir / (str(trial.number) if attempt == 0 else f"{trial.number}-{attempt}")
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        trial.set_user_attr("run_dir", str(folder.resolve()))
        return folder
    raise RuntimeError(f"no free run folder for trial {trial.number} in {sweep_dir}")


def _is_stale(trial: optuna.trial.FrozenTrial, stale_after: timedelta) -> bool:
    owner = trial.user_attrs.get("sweeper")
    age = datetime.now() - (trial.datetime_start or datetime.now())
    if owner is None:  # asked but not claimed yet (a moment), or by a process that died then
        return age > timedelta(minutes=1)
    live = alive(owner)
    return age > stale_after if live is None else not live  # other hosts: judged by age


def stale_trials(
    study: optuna.Study, stale_after: timedelta = timedelta(hours=24)
) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials whose sweep process is gone (this host) or that are older than
    stale_after (other hosts)."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    return [t for t in running if _is_stale(t, stale_after)]


def fail_stale_trials(
    study: optuna.Study, stale_after: timedelta = timedelta(hours=24)
) -> list[optuna.trial.FrozenTrial]:
    """Trials left RUNNING by a killed sweep can never finish: mark them FAIL on resume.

    Trials of sweep processes still alive (another worker on the same study) are left alone.
    """
    stale = stale_trials(study, stale_after)
    for trial in stale:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return stale


def open_trial(
    storage: str, study_name: str, number: int, pruner: optuna.pruners.BasePruner
) -> optuna.Trial:
    """A live handle on trial `number` that another process asked for (the sweeper); the
    storage's own id comes from its public lookup, not from Optuna's private attributes."""
    store = optuna.storages.get_storage(storage_object(storage))
    study = optuna.load_study(study_name=study_name, storage=store, pruner=pruner)
    study_id = store.get_study_id_from_name(study_name)
    return optuna.trial.Trial(
        study, store.get_trial_id_from_study_id_trial_number(study_id, number)
    )
