"""The sweepers' typed settings (`hydra.sweeper.*`): what a preset may set, with defaults.

Hydra's plugin (`hydra_plugins/dreamsweep_sweeper`) registers them; the sweeps read them.
Light imports only: Hydra imports every plugin module, and so this one, at start-up.
"""

from dataclasses import dataclass, field
from typing import Any

PLUGIN = "hydra_plugins.dreamsweep_sweeper.dreamsweep_sweeper"


@dataclass
class StudySettings:
    """Where the study lives, and how `dreamsweep worker` processes on it recover each
    other's trials: a trial whose heartbeat is older than grace_period seconds is failed and
    retried (at most max_retry times), resuming its run folder from its last checkpoint."""

    study_name: str | None = None  # default: sweep_name
    storage: str | None = None  # default: sqlite:///outputs/optuna/<study_name>.db
    heartbeat_interval: int = 60  # seconds between a running trial's heartbeats
    grace_period: int | None = None  # default: 2 x heartbeat_interval
    max_retry: int = 3


@dataclass
class OptunaSweeperConfig(StudySettings):
    _target_: str = f"{PLUGIN}.OptunaSweeper"
    sampler: str = "tpe"  # tpe | random | gp | grid | nsga2
    sampler_kwargs: dict[str, Any] = field(default_factory=dict)
    pruner: str = "median"  # median | hyperband | successive_halving | patient | none
    pruner_kwargs: dict[str, Any] = field(default_factory=dict)
    directions: list[str] = field(default_factory=lambda: ["maximize"])
    objectives: list[str] = field(default_factory=lambda: ["objective"])  # result.json keys
    n_trials: int = 20  # for the whole study: a resumed sweep runs only what is missing
    n_jobs: int = 1
    seed: int | None = None
    max_failure_rate: float = 0.5
    params: dict[str, str] = field(default_factory=dict)
    # Params searched only when a setting has a value: {method: {lora: {optim.lr: "..."}}}
    conditional: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)


@dataclass
class GridSweeperConfig(StudySettings):  # the study: only for `dreamsweep enqueue` and workers
    _target_: str = f"{PLUGIN}.GridSweeper"
    fold: bool = True  # evaluation axes become cells of one run, not extra training runs
    params: dict[str, str] = field(default_factory=dict)
