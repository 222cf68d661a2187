"""The worker's side of an Optuna search: report each evaluation, stop when told to.

Only the main process talks to the study; its decision is broadcast so that every process
stops at the same step (an Accelerate trigger).
"""

from __future__ import annotations

from dreamsweep.config import TrialLink


class TrialPruned(Exception):
    """The pruner stopped this run; result.json records it as pruned with its scores so far."""

    def __init__(self, step: int) -> None:
        super().__init__(f"pruned by the Optuna pruner at step {step}")
        self.step = step


class PruningHook:
    def __init__(self, link: TrialLink, accelerator) -> None:
        self.accelerator, self.trial = accelerator, None
        if link.trial_number is not None and accelerator.is_main_process:
            from dreamsweep.sweeps.study import make_pruner, open_trial

            pruner = make_pruner(link.pruner, link.pruner_kwargs)
            trial = open_trial(link.storage, link.study_name, link.trial_number, pruner)
            # report/should_prune do not exist for multi-objective studies (e.g. NSGA-II)
            self.trial = trial if len(trial.study.directions) == 1 else None

    def report(self, step: int, value: float | None) -> None:
        """Report the step's objective; raise TrialPruned on every rank if the pruner says so."""
        if step == 0:
            return  # the base model is the same for every trial
        if self.trial is not None and value is not None:
            self.trial.report(value, step)
            if self.trial.should_prune():
                self.accelerator.set_trigger()
        if self.accelerator.check_trigger():
            raise TrialPruned(step)
