"""Independent workers on one Optuna study (`dreamsweep worker`), and grids as queued trials
(`dreamsweep enqueue`).

A worker asks ONE trial, runs it through the batch sweeper's own path (optuna_sweep.run_trials:
the same overrides, run folders, W&B names and telling), and asks again: a trial the pruner
stops early frees its worker at once instead of at the end of a batch. While a trial runs, its
worker records a heartbeat in the storage on a timer; before it asks, every worker fails the
trials whose heartbeat is older than the grace period (Optuna's fail_stale_trials) and Optuna's
retry callback puts a copy of each in the queue with its params, its user attributes (so its
run folder) and its intermediate values: the worker that takes it resumes that folder from its
last checkpoint. Heartbeats need an RDB storage (SQLite, PostgreSQL); Optuna 5's journal
storage has none, so on it a trial is judged stale when its worker's process is gone from this
host (study.fail_stale_trials) and retried the same way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from dreamsweep.atomic import owner
from dreamsweep.secrets import STORAGE_ENV
from dreamsweep.sweeps.grid_sweep import named_runs, plan_sweep, write_plan
from dreamsweep.sweeps.optuna_sweep import (
    Search,
    _check_failure_rate,
    _finished,
    _mark_interrupted,
    _write_results,
    open_search,
    run_trials,
    typed_settings,
)
from dreamsweep.sweeps.settings import GridSweeperConfig, OptunaSweeperConfig, StudySettings
from dreamsweep.sweeps.study import stale_trials, storage_object

log = logging.getLogger("dreamsweep.sweep")
TrialState = optuna.trial.TrialState
# heartbeat_interval and fail_stale_trials are "experimental" in Optuna 5, and it warns that
# heartbeats are meant for study.optimize: this loop records them itself (README says so)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")


class RetryInItsFolder(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a stale trial (a queued copy with its params, user attributes and
    intermediate values, so no reported score is lost or reported twice); past max_retry,
    the trial's run folder says it was interrupted, as the batch sweeper's do."""

    def __init__(self, max_retry: int) -> None:
        super().__init__(max_retry=max_retry, inherit_intermediate_values=True)
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        tries = len(trial.system_attrs.get("retry_history", [])) + 1
        if tries > self.max_retry:
            log.warning("trial %d: its worker died; no retry left (max_retry)", trial.number)
            _mark_interrupted(trial)
            return
        log.warning(
            "trial %d: its worker stopped (no heartbeat); retry %d of %d resumes %s",
            trial.number, tries, self.max_retry, trial.user_attrs.get("run_dir"),
        )  # fmt: skip
        super().__call__(study, trial)


@dataclass
class Worker:
    """One worker process's loop state: its study, its storage handle (heartbeats and the
    queue), and which trials it ran for how long (its last log line)."""

    search: Search
    store: Any
    retry: RetryInItsFolder
    heartbeats: bool
    busy: float = 0.0
    ran: list[int] = field(default_factory=list)
    run_dirs: set[str] = field(default_factory=set)

    @property
    def settings(self) -> OptunaSweeperConfig:
        return self.search.settings

    def recover(self) -> None:
        """Fail the trials of dead workers; each is retried (queued) unless out of retries."""
        study = self.search.study
        if self.heartbeats:
            optuna.storages.fail_stale_trials(study)  # calls self.retry for each
            return
        for trial in stale_trials(study):  # journal: this host's dead processes
            try:  # as Optuna's: only the worker whose FAIL lands queues the retry
                if not self.store.set_trial_state_values(
                    self.trial_id(trial.number), state=TrialState.FAIL
                ):
                    continue
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            self.retry(study, trial)

    def run(self, trial: optuna.Trial) -> None:
        started = time.perf_counter()
        try:
            with self.beating(trial.number):
                (job,) = run_trials(self.search, [trial])
            self.run_dirs.add(str(job.hydra_cfg.hydra.runtime.output_dir))
        except optuna.exceptions.UpdateFinishedTrialError:  # its heartbeats came too late
            log.warning(
                "trial %d was failed by another worker (no heartbeat within grace_period=%ss: "
                "raise it if the storage is slow) and is retried there", trial.number,
                self.settings.grace_period or 2 * self.settings.heartbeat_interval,
            )  # fmt: skip
        self.busy += time.perf_counter() - started
        self.ran.append(trial.number)

    @contextmanager
    def beating(self, number: int):
        """record_heartbeat every heartbeat_interval seconds while the trial runs (Optuna
        does this only inside study.optimize, which an ask/tell loop does not use); each beat
        also looks for dead workers' trials, so they are queued for a retry within the grace
        period even while every worker is busy."""
        if not self.heartbeats:
            yield
            return
        trial_id = self.trial_id(number)
        stop = threading.Event()

        def beat() -> None:
            while True:
                try:
                    self.store.record_heartbeat(trial_id)
                    self.recover()
                except Exception as err:  # a storage hiccup: the next beat may get through
                    log.warning("trial %d: heartbeat not recorded: %s", number, err)
                if stop.wait(self.settings.heartbeat_interval):
                    return

        thread = threading.Thread(target=beat, name=f"heartbeat-{number}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def trial_id(self, number: int) -> int:
        study_id = self.store.get_study_id_from_name(self.search.study.study_name)
        return self.store.get_trial_id_from_study_id_trial_number(study_id, number)

    def pop_queued(self) -> optuna.Trial | None:
        """A queued trial for this worker, or None. study.ask would make a new trial when a
        rival worker takes the last queued one first; a grid must not grow."""
        study = self.search.study
        for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = self.trial_id(frozen.number)
            try:
                if self.store.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return optuna.trial.Trial(study, trial_id)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
        return None

    def wait(self) -> None:
        time.sleep(min(self.settings.heartbeat_interval, 10))


def _me() -> str:
    who = owner()
    return f"{who['host']}:{who['pid']}"


def failed_runs(study: optuna.Study) -> int:
    """FAIL trials that ran and were not retried: runs that failed, not workers that died (a
    retry that fails counts once) nor trials left unrun (over_budget)."""
    trials = study.get_trials(deepcopy=False)
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    return sum(
        t.state == TrialState.FAIL and t.number not in retried and NOT_RUN not in t.user_attrs
        for t in trials
    )


NOT_RUN = "not_run"
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)


def over_budget(study: optuna.Study, trial: optuna.Trial, n_trials: int) -> bool:
    """Workers that count the study and ask at the same moment may together ask more than
    n_trials. A new trial whose lower-numbered live trials (all created before it, so all
    visible) already fill n_trials is told FAIL unrun; a retry always runs (it replaces a
    trial that counts no more)."""
    if trial.user_attrs.get("run_dir"):
        return False
    earlier = [t for t in study.get_trials(deepcopy=False, states=LIVE) if t.number < trial.number]
    if len(earlier) < n_trials:
        return False
    trial.set_user_attr(NOT_RUN, f"n_trials={n_trials} were taken by other workers first")
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
    log.info("trial %d not run: the study's %d trials are taken", trial.number, n_trials)
    return True


def count(study: optuna.Study, *states: TrialState) -> int:
    return len(study.get_trials(deepcopy=False, states=states))


def open_worker(sweeper, s: OptunaSweeperConfig, arguments: list[str]) -> Worker:
    retry = RetryInItsFolder(s.max_retry)
    grace = s.grace_period or 2 * s.heartbeat_interval
    rdb = {
        "heartbeat_interval": s.heartbeat_interval,
        "grace_period": grace,
        "heartbeat_stale_trial_callback": retry,
    }
    search = open_search(sweeper, s, arguments, rdb_kwargs=rdb)
    url = _storage_url()
    store = optuna.storages.get_storage(storage_object(url))
    heartbeats = not url.startswith("journal:")
    if not heartbeats:
        log.warning(
            "journal storage: no heartbeats (Optuna 5 has them for RDB storages only); a trial "
            "is retried when its worker's process is gone from this host"
        )
    return Worker(search, store, retry, heartbeats)


def _storage_url() -> str:
    return os.environ[STORAGE_ENV]  # open_search put the study's URL there


def run_worker(sweeper, arguments: list[str]) -> list:
    """The worker loop of `dreamsweep worker`: a search (the preset's sampler asks new trials
    until n_trials have finished) or a queued grid (only queued trials, each run once)."""
    if "fold" in sweeper.settings:
        return _drain_grid(sweeper)
    s = typed_settings(sweeper.settings)
    if s.n_jobs > 1:
        log.info("hydra.sweeper.n_jobs=%d is the batch sweeper's: a worker runs one trial at a "
                 "time (start more with --slots)", s.n_jobs)  # fmt: skip
    worker = open_worker(sweeper, s, arguments)
    search, study = worker.search, worker.search.study
    log.info("worker %s on study '%s' in %s: %d of %d trials done", _me(), study.study_name,
             search.shown, _finished(study), search.n_trials)  # fmt: skip
    failed_before = failed_runs(study)
    while True:
        worker.recover()
        finished = _finished(study)
        if finished >= search.n_trials:
            break
        queued = count(study, TrialState.WAITING)
        if not queued and finished + count(study, TrialState.RUNNING) >= search.n_trials:
            worker.wait()  # the rest are running elsewhere; one may die and need a retry
            continue
        trial = study.ask(search.distributions)  # a queued retry first, else a new trial
        if over_budget(study, trial, search.n_trials):
            continue
        worker.run(trial)
        _check_failure_rate(failed_runs(study) - failed_before, s.max_failure_rate, search.n_trials)
    _finish(worker)
    _write_results(study, search.sweep_dir, search.shown)
    return []


def _drain_grid(sweeper) -> list:
    s = _grid_study_settings(sweeper)
    worker = open_worker(sweeper, s, [])
    study = worker.search.study
    if "grid" not in study.user_attrs:
        raise SystemExit(
            f"error: study '{study.study_name}' in {worker.search.shown} has no queued grid; "
            "put its runs there first: dreamsweep enqueue <the same arguments>"
        )
    log.info("worker %s draining grid '%s': %d queued, %d running", _me(), study.study_name,
             count(study, TrialState.WAITING), count(study, TrialState.RUNNING))  # fmt: skip
    while True:
        worker.recover()
        if (trial := worker.pop_queued()) is not None:
            worker.run(trial)
        elif count(study, TrialState.RUNNING):
            worker.wait()  # another worker's run: it may die and come back to the queue
        else:
            break
    _finish(worker)
    return []


def _grid_study_settings(sweeper) -> OptunaSweeperConfig:
    """A grid's study: no sampler or pruner at work, every failure final (no retry budget)."""
    grid = GridSweeperConfig(**{k: v for k, v in sweeper.settings.items() if k != "_target_"})
    study = {k: getattr(grid, k) for k in StudySettings.__dataclass_fields__}
    return OptunaSweeperConfig(
        **study, sampler="random", pruner="none", max_failure_rate=1.0, n_trials=0
    )


def _finish(worker: Worker) -> None:
    """The worker's last line (Hydra's job files never held the password: the sweeper masked
    the URL in its config before the first job, secrets.mask_sweep_config)."""
    log.info("worker %s done: ran trial(s) %s, %.1f s running trials", _me(), worker.ran,
             worker.busy)  # fmt: skip


def enqueue_grid(sweeper, arguments: list[str]) -> list:
    """`dreamsweep enqueue`: the folded grid's training runs into the study as queued trials,
    each with its overrides, its planned cells and its run folder (`<sweep dir>/<job>`, as a
    one-process grid names it). Enqueuing the same grid again adds only the runs not there."""
    if "fold" not in sweeper.settings:
        raise SystemExit(
            "error: dreamsweep enqueue takes a grid (hydra/sweeper=grid, e.g. +sweep=demo); "
            "a search needs no queue: start dreamsweep worker on it"
        )
    cfg = sweeper.config
    plan, jobs = plan_sweep(sweeper, arguments)
    for warning in plan.warnings:
        log.warning(warning)
    sweep_dir = Path(cfg.hydra.sweep.dir).resolve()
    write_plan(cfg, sweep_dir, plan, jobs)
    worker = open_worker(sweeper, _grid_study_settings(sweeper), [])
    study = worker.search.study
    study.set_user_attr("grid", {"sweep_dir": str(sweep_dir), "runs": len(jobs)})
    there = {t.user_attrs.get("run_dir") for t in study.get_trials(deepcopy=False)}
    added = 0
    for job, name in zip(jobs, named_runs(plan.runs), strict=True):
        run_dir = str(sweep_dir / str(job["job"]))
        if run_dir in there:
            continue
        attrs = {"overrides": job["overrides"], "cells": job["cells"], "run_dir": run_dir,
                 "run_name": name, "job": job["job"]}  # fmt: skip
        study.enqueue_trial({}, user_attrs=attrs)
        added += 1
    cells = sum(len(j["cells"]) for j in jobs)
    log.info("grid '%s': %d training run(s), %d cell(s); %d put in the queue of study '%s' in "
             "%s (%d were there); run folders in %s", study.study_name, len(jobs), cells, added,
             study.study_name, worker.search.shown, len(jobs) - added, sweep_dir)  # fmt: skip
    return []
