"""The sweepers' typed settings (`hydra.sweeper.*`): what a preset may set, with defaults.

Hydra's plugin (`hydra_plugins/dreamsweep_sweeper`) registers them; the sweeps read them.
Light imports only: Hydra imports every plugin module, and so this one, at start-up.
"""

from dataclasses import dataclass, field
from typing import Any

PLUGIN = "hydra_plugins.dreamsweep_sweeper.dreamsweep_sweeper"


@dataclass
class OptunaSweeperConfig:
    _target_: str = f"{PLUGIN}.OptunaSweeper"
    study_name: str | None = None  # default: sweep_name
    storage: str | None = None  # default: sqlite:///outputs/optuna/<study_name>.db
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
class GridSweeperConfig:
    _target_: str = f"{PLUGIN}.GridSweeper"
    fold: bool = True  # evaluation axes become cells of one run, not extra training runs
    params: dict[str, str] = field(default_factory=dict)
