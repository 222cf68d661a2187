"""Registers `hydra/sweeper=optuna` (an Optuna >= 5 ask/tell sweeper with pruning) and
`hydra/sweeper=grid` (a grid whose evaluation axes fold into cells of one run). `dreamsweep
worker` and `dreamsweep enqueue` swap in WorkerSweeper and EnqueueSweeper as the preset's
sweeper (`hydra.sweeper._target_`), keeping its settings.

Light imports only (Hydra imports every plugin module at start-up); the settings are
`dreamsweep.sweeps.settings`, the work `dreamsweep.sweeps.optuna_sweep` and `.grid_sweep`.
"""

from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.plugins.sweeper import Sweeper

from dreamsweep.sweeps.settings import GridSweeperConfig, OptunaSweeperConfig

for _name, _node in (("optuna", OptunaSweeperConfig), ("grid", GridSweeperConfig)):
    ConfigStore.instance().store(
        group="hydra/sweeper", name=_name, node=_node, provider="dreamsweep"
    )


class OptunaSweeper(Sweeper):
    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config = self.launcher = self.hydra_context = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from hydra.core.plugins import Plugins

        from dreamsweep.secrets import mask_sweep_config

        mask_sweep_config(config)  # before any job file is written; settings keep the real URL
        self.hydra_context, self.config = hydra_context, config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from dreamsweep.sweeps.optuna_sweep import run_sweep

        return run_sweep(self, arguments)


class GridSweeper(Sweeper):
    """A grid over training axes; evaluation axes folded; a failed run does not stop it."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config = self.launcher = self.hydra_context = None

    setup = OptunaSweeper.setup

    def sweep(self, arguments: list[str]) -> Any:
        from dreamsweep.sweeps.grid_sweep import run_grid

        return run_grid(self, arguments)


class WorkerSweeper(Sweeper):
    """`dreamsweep worker`: one trial at a time from the study, until it is done or its queue
    is empty (sweeps/pool.py); the preset's settings (search or grid) as they are."""

    def __init__(self, **settings: Any) -> None:
        self.settings = settings
        self.config = self.launcher = self.hydra_context = None

    setup = OptunaSweeper.setup

    def sweep(self, arguments: list[str]) -> Any:
        from dreamsweep.sweeps.pool import run_worker

        return run_worker(self, arguments)


class EnqueueSweeper(WorkerSweeper):
    """`dreamsweep enqueue`: a grid preset's training runs into the study's queue."""

    def sweep(self, arguments: list[str]) -> Any:
        from dreamsweep.sweeps.pool import enqueue_grid

        return enqueue_grid(self, arguments)
