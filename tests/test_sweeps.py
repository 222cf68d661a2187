"""Sweeps: presets compose, the Optuna sweeper searches, prunes, resumes and survives failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import ROOT, compose_raw

PRESETS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_says_what_it_answers(preset):
    text = (ROOT / "sweeps" / f"{preset}.yaml").read_text()
    assert "Question" in text
    cfg = compose_raw(f"+sweep={preset}")
    assert cfg.sweep_name == preset


def test_the_search_space_follows_hydra_override_grammar():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from dreamsweep.sweeps.search_space import split_overrides

    dists, fixed, grid = split_overrides(
        [
            "optim.lr=tag(log, interval(1e-6, 1e-4))",
            "train.max_steps=range(100,400,100)",
            "prior.enabled=true,false",
            "train.seed=3",
        ]
    )
    assert dists["optim.lr"] == FloatDistribution(1e-6, 1e-4, log=True)
    assert dists["train.max_steps"] == IntDistribution(100, 300, step=100)  # stop is exclusive
    assert isinstance(dists["prior.enabled"], CategoricalDistribution)
    assert fixed == ["train.seed=3"] and grid is None


SEARCH = (
    "train.max_steps=8",
    "eval.every_n_steps=2",
    "hydra.sweeper.seed=0",
    "hydra.sweeper.pruner_kwargs={n_startup_trials:1,n_warmup_steps:0}",
)


def sweep(tmp_path: Path, *overrides: str, name: str = "s") -> subprocess.CompletedProcess:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        "+sweep=demo_search",
        *SEARCH,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={name}",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        *overrides,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)


def load(tmp_path: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.slow
def test_an_optuna_search_prunes_resumes_and_names_the_best_run(tmp_path):
    # A trial left RUNNING by a killed sweep: marked FAIL when the sweep resumes.
    optuna.create_study(
        study_name="s", storage=f"sqlite:///{tmp_path / 'study.db'}", direction="maximize"
    ).ask()
    proc = sweep(tmp_path, "hydra.sweeper.n_trials=4", "optim.lr=choice(1e-3,1e-5,3.0)")
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = [t.state for t in load(tmp_path).trials]
    assert states[0] == optuna.trial.TrialState.FAIL and len(states) == 5

    study = load(tmp_path)
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, [t.state for t in study.trials]
    for trial in pruned:  # stopped early, scores kept, linked both ways
        result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
        assert result["state"] == "pruned" and result["final_step"] < 8
        assert result["optuna"]["trial"] == trial.number and result["best"] is not None
    summary = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert summary["best"][0]["number"] == study.best_trial.number

    again = sweep(tmp_path, "hydra.sweeper.n_trials=5", "optim.lr=choice(1e-3,1e-5,3.0)")
    assert again.returncode == 0, again.stderr[-3000:]
    done = [t for t in load(tmp_path).trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(done) == 5  # resumed: one more trial, none run twice


@pytest.mark.slow
def test_a_failing_trial_is_told_fail_and_the_sweep_goes_on(tmp_path):
    proc = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.max_failure_rate=0.6",
        "optim.lr=1e-3",
        "train.text_encoder=false",
        "train.noise_offset=0.0,1e38",
        name="f",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = sorted(t.state.name for t in load(tmp_path, "f").trials)
    assert states == ["COMPLETE", "FAIL"]
