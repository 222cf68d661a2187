"""Registers `hydra/sweeper=optuna`: an Optuna >= 5 ask/tell sweeper with pruning.

Light imports only (Hydra imports every plugin module at start-up); the work is in
`dreamsweep.sweeps.optuna_sweep`.
"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper


@dataclass
class OptunaSweeperConfig:
    _target_: str = "hydra_plugins.dreamsweep_sweeper.dreamsweep_sweeper.OptunaSweeper"
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


ConfigStore.instance().store(
    group="hydra/sweeper", name="optuna", node=OptunaSweeperConfig, provider="dreamsweep"
)


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from dreamsweep.sweeps.optuna_sweep import run_sweep

        return run_sweep(self, arguments)


@dataclass
class GridSweeperConfig:
    _target_: str = "hydra_plugins.dreamsweep_sweeper.dreamsweep_sweeper.GridSweeper"
    fold: bool = True  # evaluation axes become cells of one run, not extra training runs
    params: dict[str, str] = field(default_factory=dict)


ConfigStore.instance().store(
    group="hydra/sweeper", name="grid", node=GridSweeperConfig, provider="dreamsweep"
)


class GridSweeper(Sweeper):
    """A grid over training axes; evaluation axes folded; a failed run does not stop it."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config = self.launcher = self.hydra_context = None

    setup = OptunaSweeper.setup

    def sweep(self, arguments: list[str]) -> Any:
        from dreamsweep.sweeps.grid_sweep import run_grid

        return run_grid(self, arguments)
