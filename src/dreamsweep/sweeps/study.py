"""Optuna studies for sweeps: storage, samplers and pruners by name, and telling results.

Shared by the sweeper plugin (asks and tells) and the worker (reports and asks whether to
prune). The pruner is not stored in the study, so both build it from the same settings.
"""

from __future__ import annotations

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


def fail_stale_trials(study: optuna.Study) -> int:
    """Trials left RUNNING by a killed sweep can never finish: mark them FAIL on resume."""
    stale = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for trial in stale:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
    return len(stale)


def open_trial(
    storage: str, study_name: str, trial_id: int, pruner: optuna.pruners.BasePruner
) -> optuna.Trial:
    """A live handle on a trial that another process asked for (notes/sweeps.md)."""
    study = optuna.load_study(study_name=study_name, storage=storage_object(storage), pruner=pruner)
    return optuna.trial.Trial(study, trial_id)
