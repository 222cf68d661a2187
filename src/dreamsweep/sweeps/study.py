"""Optuna studies for sweeps: storage, samplers and pruners by name, and telling results.

Shared by the sweeper plugin (asks and tells) and the worker (reports and asks whether to
prune). The pruner is not stored in the study, so both build it from the same settings.
"""

from __future__ import annotations

import os
import random
import socket
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna

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


def default_storage(outputs_root: Path, study_name: str) -> str:
    """A SQLite file at a stable path: running the same command again resumes the study."""
    path = (outputs_root / "optuna" / f"{study_name}.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_object(url: str):
    """RDB URLs as they are; `journal:<file>` for a journal file on a shared filesystem."""
    if url.startswith("journal:"):
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        return JournalStorage(JournalFileBackend(url.removeprefix("journal:")))
    return url


def create_or_load(study_name: str, storage: str, **kwargs) -> optuna.Study:
    """create_study(load_if_exists=True), retried: two sweep processes starting together on a
    fresh storage race to create its tables and the study."""
    for attempt in range(5):
        try:
            return optuna.create_study(
                study_name=study_name,
                storage=storage_object(storage),
                load_if_exists=True,
                **kwargs,
            )
        except Exception:  # sqlalchemy/optuna errors of the losing process
            if attempt == 4:
                raise
            time.sleep(0.5 + random.random())
    raise AssertionError("unreachable")


def claim(trial: optuna.Trial) -> None:
    """Record which sweep process runs a trial, so a resuming sweep can tell stale from live."""
    trial.set_user_attr("sweeper", {"host": socket.gethostname(), "pid": os.getpid()})


def _is_stale(trial: optuna.trial.FrozenTrial, stale_after: timedelta) -> bool:
    owner = trial.user_attrs.get("sweeper")
    age = datetime.now() - (trial.datetime_start or datetime.now())
    if owner is None:  # asked but not claimed yet (a moment), or by a process that died then
        return age > timedelta(minutes=1)
    if owner.get("host") == socket.gethostname():
        return not _alive(owner.get("pid"))
    return age > stale_after  # another machine: only judge by age


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_stale_trials(study: optuna.Study, stale_after: timedelta = timedelta(hours=24)) -> int:
    """Trials left RUNNING by a killed sweep can never finish: mark them FAIL on resume.

    Trials of sweep processes still alive (another worker on the same study) are left alone.
    """
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    stale = [t for t in running if _is_stale(t, stale_after)]
    for trial in stale:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return len(stale)


def open_trial(
    storage: str, study_name: str, trial_id: int, pruner: optuna.pruners.BasePruner
) -> optuna.Trial:
    """A live handle on a trial that another process asked for (notes/sweeps.md)."""
    study = optuna.load_study(study_name=study_name, storage=storage_object(storage), pruner=pruner)
    return optuna.trial.Trial(study, trial_id)
