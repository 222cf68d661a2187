"""What the training loop does between steps besides checkpoints: the evaluation hook, and
the weights it evaluates (as `Evaluator.evaluate` and `BestKeeper.offer` take them: a name ->
a function that opens a context yielding the components holding those weights)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from pathlib import Path

from dreamsweep.best_weights import BestKeeper
from dreamsweep.cells import BASE, scored_weights
from dreamsweep.models.components import SDComponents
from dreamsweep.runs import cell_dir, grid_file
from dreamsweep.sweeps.pruning import PruningHook
from dreamsweep.training.ema import ema_weights
from dreamsweep.training.embeddings import averaged_module
from dreamsweep.training.setup import TrainState, unwrapped
from dreamsweep.training.val_loss import Validation

Weights = dict[str, Callable[[], AbstractContextManager[SDComponents]]]


def base_weights(components: SDComponents) -> Weights:
    """The base model's weights, scored at step 0 as the start of every curve."""
    return {BASE: partial(nullcontext, components)}


class TrainedWeights:
    """The weights a run scores (cells.scored_weights): raw, and its EMA when it has one."""

    def __init__(self, state: TrainState) -> None:
        self.state = state
        self.names = scored_weights(state.cfg)

    def raw(self) -> AbstractContextManager[SDComponents]:
        return nullcontext(unwrapped(self.state))

    @contextmanager
    def ema(self) -> Iterator[SDComponents]:
        components = unwrapped(self.state)
        module, tracked = averaged_module(self.state.cfg, components), self.state.ema_tracked
        with ema_weights(self.state.ema, module, tracked):
            yield components

    def by_name(self) -> Weights:
        return {name: getattr(self, name) for name in self.names}


class EvalHook:
    """After a step: the validation loss when due (main process), then at an eval step every
    cell scored (all processes), logged, the weights of a new best cell kept (main process),
    and the step's best objective reported to an Optuna pruner, which may stop the run.
    `seconds` adds up the time spent, which the run reports apart from training."""

    def __init__(
        self,
        evaluator,
        validation: Validation | None,
        trackers: list,
        run_dir: Path,
        pruning: PruningHook,
        keeper: BestKeeper | None,
        main: bool,
    ) -> None:
        self.evaluator, self.validation, self.trackers = evaluator, validation, trackers
        self.run_dir, self.pruning, self.keeper, self.main = run_dir, pruning, keeper, main
        self.seconds = 0.0

    def is_eval_step(self, step: int) -> bool:
        return self.evaluator is not None and step in self.evaluator.steps

    def due(self, step: int) -> bool:
        """Whether the hook has work at this step; the same answer on every process."""
        is_eval = self.is_eval_step(step)
        return is_eval or (self.validation is not None and self.validation.due(step, is_eval))

    def __call__(self, step: int, weights: Weights) -> None:
        started = time.perf_counter()
        try:
            self._validate(step, weights)
            if self.is_eval_step(step):
                self._score(step, weights)
        finally:
            self.seconds += time.perf_counter() - started

    def _validate(self, step: int, weights: Weights) -> None:
        v = self.validation
        if self.main and v is not None and v.due(step, self.is_eval_step(step)):
            records = v(step, weights)
            for tracker in self.trackers:
                tracker.log_val(records)

    def _score(self, step: int, weights: Weights) -> None:
        records = self.evaluator.evaluate(step, weights)
        grids = {r["cell"]: grid_file(cell_dir(self.run_dir, step, r["cell"])) for r in records}
        for tracker in self.trackers:
            tracker.log_eval(records, grids)
        if self.keeper is not None and step > 0 and (kept := self.keeper.offer(records, weights)):
            print(f"[dreamsweep] best so far: step {step} {kept['cell']} -> {self.keeper.folder}")
        values = [r["objective"] for r in records if r["objective"] is not None]
        self.pruning.report(step, max(values) if values else None)
