"""Sweeps: presets compose, the Optuna sweeper searches, prunes, resumes and survives failures."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf

from dreamsweep.sweeps.study import storage_object
from tests.helpers import FAST, ROOT, SEARCH, compose_config, compose_raw, multirun, train_py

PRESETS = sorted(p.stem for p in (ROOT / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes_and_gives_the_sweeper_its_parameters(preset):
    cfg = compose_raw(f"+sweep={preset}")
    assert cfg.sweep_name == preset
    sweeper = yaml.safe_load((ROOT / "sweeps" / f"{preset}.yaml").read_text())["hydra"]["sweeper"]
    assert sweeper["params"] and all(isinstance(k, str) for k in sweeper["params"])


EXPECTED_RUNS = {
    "lr_steps": 2,
    "faces_prior": 4,
    "schedulers": 1,
    "text_encoder": 2,
    "ema": 2,
    "demo": 4,
    "toyworld_lr_steps": 3,
    "toyworld_prior": 4,
    "toyworld_text_encoder": 2,
    "toyworld_ema": 1,
    "toyworld_schedulers": 1,
    "token": 3,
    "toyworld_methods": 4,
    "toyworld_token": 3,
    "sdxl_lora": 12,
    "toyworld_xl_lora": 4,
}


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_plans_its_runs(preset):
    """What `python train.py -m +sweep=<preset>` does before it trains anything."""
    from hydra import compose, initialize_config_dir

    from dreamsweep.sweeps.search_space import split_overrides

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", [f"+sweep={preset}"], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in cfg.hydra.sweeper.params.items()]
    if "fold" in cfg.hydra.sweeper:  # a grid
        grid = plan(f"+sweep={preset}", *params)
        assert len(grid.runs) == EXPECTED_RUNS[preset] and not grid.warnings
    else:  # an Optuna search: the LR searched, for every method where it is conditional
        from dreamsweep.sweeps.search_space import conditional_space

        distributions, _, _ = split_overrides(params)
        sweeper = OmegaConf.to_container(cfg.hydra.sweeper)
        conditional = conditional_space(sweeper.get("conditional") or {})
        searched = set(distributions) | {k for d in conditional.values() for k in d}
        assert "optim.lr" in searched


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


def sweep(tmp_path: Path, *overrides: str, name: str = "s") -> subprocess.CompletedProcess:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    return multirun(
        tmp_path / "sweep",
        "+sweep=demo_search",
        *FAST,
        *SEARCH,
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweeper.study_name={name}",
        *overrides,
        cache=tmp_path / "cache",
    )


def load(tmp_path: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'study.db'}")


@pytest.mark.slow
def test_an_optuna_search_prunes_a_bad_learning_rate_and_names_the_best_run(pruned_search):
    sweep_dir, storage = pruned_search
    study = optuna.load_study(study_name="s", storage=storage)
    states = [t.state for t in study.trials]
    # the trial a killed sweep left RUNNING was marked FAIL; then 4 trials ran
    assert states[0] == optuna.trial.TrialState.FAIL and len(states) == 5
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, states
    for trial in pruned:  # stopped early, scores kept, linked both ways
        result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
        assert result["state"] == "pruned" and result["final_step"] < 8
        assert result["optuna"]["trial"] == trial.number and result["best"] is not None
    summary = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    assert summary["best"][0]["number"] == study.best_trial.number
    best = study.best_trial  # its value stays the best cell's objective; its interval beside it
    low, high = best.user_attrs["objective_interval"]
    assert low <= high and result_interval(best) == [low, high]
    assert study.metric_names == ["objective"]  # what optuna-dashboard shows, not "Objective 0"
    assert study.user_attrs["sweep_dirs"] == [str(sweep_dir.resolve())]
    assert "+sweep=demo_search" in study.user_attrs["commands"][0]


def result_interval(trial) -> list[float]:
    """The interval the trial's run recorded (result.json), which the sweeper put on it."""
    run = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
    return run["objective_interval"]


@pytest.mark.slow
def test_running_the_same_search_again_resumes_its_study(pruned_search, tmp_path):
    _, storage = pruned_search
    shutil.copy(storage.removeprefix("sqlite:///"), tmp_path / "study.db")  # leave the original

    again = sweep(tmp_path, "hydra.sweeper.n_trials=5", "optim.lr=choice(1e-3,1e-5,3.0)")

    assert again.returncode == 0, again.stderr[-3000:]
    done = [t for t in load(tmp_path).trials if t.state != optuna.trial.TrialState.FAIL]
    assert len(done) == 5  # one more trial
    ran_here = sorted(p.name for p in (tmp_path / "sweep").iterdir() if p.name.isdigit())
    assert ran_here == [str(done[-1].number)]  # and only it ran: none of the 4 ran twice
    assert "4 of 5 trials done" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_failing_trial_is_told_fail_and_the_sweep_goes_on(tmp_path):
    proc = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler=grid",
        "hydra.sweeper.max_failure_rate=0.6",
        "optim.lr=1e-3",
        "train.text_encoder=false",
        "train.noise=offset",
        "train.noise_offset=0.1,1e38",
        name="f",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    states = sorted(t.state.name for t in load(tmp_path, "f").trials)
    assert states == ["COMPLETE", "FAIL"]


@pytest.mark.slow
def test_too_many_failures_end_the_sweep_in_one_line(tmp_path):
    proc = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.max_failure_rate=0",
        "optim.lr=1e-3",
        "train.noise=offset",
        "train.noise_offset=1e38",  # every trial diverges
        name="broken",
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors[-1].startswith("error: 1 trials failed, more than hydra.sweeper.max_failure")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.slow
def test_a_conditional_lr_range_follows_the_method(tmp_path):
    """LoRA and full fine-tune trials draw their LR from their own range (it wins over the
    preset's unconditional optim.lr)."""
    proc = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=4",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.sampler=random",
        "train.max_steps=2",
        "eval.every_n_steps=null",
        "method=dreambooth,lora",
        "+hydra.sweeper.conditional={method:{dreambooth:{optim.lr:'interval(1e-6,2e-6)'},"
        "lora:{optim.lr:'interval(1e-4,2e-4)'}}}",
        name="cond",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(tmp_path, "cond").trials
    assert {t.params["method"] for t in trials} == {"dreambooth", "lora"}
    for trial in trials:
        method = trial.params["method"]
        lr = trial.params[f"optim.lr | method={method}"]
        low = {"dreambooth": 1e-6, "lora": 1e-4}[method]
        assert low <= lr <= 2 * low
        config = OmegaConf.load(Path(trial.user_attrs["run_dir"]) / "config.yaml")
        assert config.optim.lr == lr and config.method.name == method


@pytest.mark.slow
def test_the_validation_loss_can_be_the_objective(tmp_path):
    proc = sweep(
        tmp_path,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner=none",
        "hydra.sweeper.objectives=[val/instance_loss]",
        "hydra.sweeper.directions=[minimize]",
        "train.max_steps=2",
        "eval.every_n_steps=null",
        name="val",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for trial in load(tmp_path, "val").trials:
        result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
        assert trial.values == [result["val"]["val/instance_loss"]]
        assert result["val"]["step"] == 2 and result["val"]["weights"] == "ema"


def plan(*lines: str, fold: bool = True):
    """The grid plan of `train.py -m <lines>`; each run's LR schedule from its composed config."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from dreamsweep.sweeps.folding import plan_grid

    return plan_grid(
        OverridesParser.create().parse_overrides(list(lines)),
        [],
        schedule_of=lambda run: compose_raw(*run).optim.lr_scheduler,
        fold=fold,
    )


def test_evaluation_axes_fold_into_one_training_run():
    grid = plan(
        "optim.lr=1e-6,2e-6",
        "train.max_steps=400,800,1200",
        "eval.schedulers=pndm,ddim",
        "ema.enabled=true,false",
    )
    assert len(grid.runs) == 2  # one per learning rate
    assert set(grid.folded) == {
        "train.max_steps=1200",
        "eval.at_steps=[400,800,1200]",
        "eval.schedulers=[pndm,ddim]",
        "ema.enabled=true",
        "eval.weights=[ema,raw]",
    }
    assert grid.runs[0][-1] == "optim.lr=1e-06" and not grid.warnings


def test_numbers_on_list_axes_fold_too():
    grid = plan("eval.num_inference_steps=50,100", "eval.guidance_scale=5,7.5")  # as in presets
    assert set(grid.folded) == {
        "eval.num_inference_steps=[50,100]",
        "eval.guidance_scale=[5,7.5]",
    }
    assert len(grid.runs) == 1  # one training run, scored under all four settings


def test_steps_stay_separate_runs_when_the_lr_schedule_depends_on_them():
    grid = plan("optim.lr_scheduler=cosine", "train.max_steps=400,800")
    assert [r[-1] for r in grid.runs] == ["train.max_steps=400", "train.max_steps=800"]
    assert "cosine" in grid.warnings[0]


def test_a_swept_lr_schedule_keeps_every_step_count_a_training_run():
    """Step 4 of an 8-step cosine run is not the 4-step cosine run: nothing folds the steps
    when any run's schedule depends on them, and the plan says which run."""
    grid = plan("optim.lr_scheduler=constant,cosine", "train.max_steps=4,8")
    assert len(grid.runs) == 4
    assert "optim.lr_scheduler=cosine" in grid.warnings[0]


def test_runs_side_by_side_get_gpus_of_their_own():
    from dreamsweep.launch import gpu_slots, worker_env

    assert gpu_slots(n_jobs=2, gpus_per_job=2, devices=4) == ["0,1", "2,3"]
    assert gpu_slots(n_jobs=2, gpus_per_job=2, devices=3) is None  # too few: not pinned
    assert gpu_slots(n_jobs=1, gpus_per_job=1, devices=8) is None  # one run takes them all
    pinned = compose_config("launcher=multigpu", "launcher.gpu_ids='2,3'", check_machine=False)
    assert worker_env(pinned)["CUDA_VISIBLE_DEVICES"] == "2,3"


def test_folding_can_be_turned_off_for_a_naive_grid():
    assert len(plan("train.max_steps=4,8", "eval.schedulers=a,b", fold=False).runs) == 4


@pytest.mark.slow
def test_the_demo_grid_folds_steps_and_schedulers_and_survives_bad_runs(demo_grid):
    sweep_dir, proc = demo_grid
    out = proc.stdout + proc.stderr
    # prior on/off x lr 1e-3/-1 = 4 runs; steps 2,4 and schedulers ddim,pndm are cells
    assert "grid: 4 training run(s), 12 scored cell(s) in all (6/0/6/0 per run)" in out
    runs = sorted(p for p in sweep_dir.iterdir() if p.is_dir())
    results = {p.name: json.loads((p / "result.json").read_text()) for p in runs}
    failed = [n for n, r in results.items() if r["state"] == "failed"]
    assert len(failed) == 2 and all("optim.lr" in results[n]["error"] for n in failed)
    for run in runs:
        if run.name in failed:
            continue
        cells = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert sum(c["kind"] == "eval" for c in cells) == 6  # 2 bases + 2 steps x 2 schedulers
        assert results[run.name]["state"] == "complete"
    names = [OmegaConf.load(run / "config.yaml").run_name for run in runs if run.name not in failed]
    assert sorted(sorted(n.split()) for n in names) == [  # W&B run names: what differs
        ["lr=0.001", "prior=false"],
        ["lr=0.001", "prior=true"],
    ]
    # shared work is done once for the sweep: the second run finds it in the cache
    made = [line for line in proc.stdout.splitlines() if "class images of" in line]
    assert sum("held-out" not in line for line in made) == 1  # the prior-preservation run
    assert sum("held-out" in line for line in made) == 1  # the validation set, shared
    assert proc.stdout.count("encoding VAE latents of 6 images") == 1


@pytest.fixture(  # the journal file: same claim/lock path as SQLite, run with -m exhaustive
    params=["sqlite", pytest.param("journal", marks=pytest.mark.exhaustive), "postgresql"]
)
def shared_storage(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    if request.param == "journal":
        return f"journal:{tmp_path / 'study.journal'}"
    return request.getfixturevalue("postgres_url")


SHARED = (  # the demo search cut short; seeded, so each process would propose the same values
    "+sweep=demo_search",
    *FAST,
    "train.max_steps=2",
    "eval.every_n_steps=null",
    "hydra.sweeper.pruner=none",
    "hydra.sweeper.study_name=shared",
)


def start_sweep(sweep_dir: Path, storage: str, *overrides: str) -> subprocess.Popen:
    """A sweep process in the background, in a process group of its own (to kill it whole)."""
    cmd = [sys.executable, "train.py", "-m", *SHARED, f"hydra.sweeper.storage='{storage}'"]
    return subprocess.Popen(
        [*cmd, *overrides, f"hydra.sweep.dir={sweep_dir}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_two_sweep_processes_share_one_study_without_running_a_trial_twice(
    tmp_path, shared_storage
):
    """Two workers started together on one study and one sweep folder (as two starts in the
    same second would share `${now}`): each trial runs once, in a folder of its own."""
    sweep = tmp_path / "sweep"
    workers = [start_sweep(sweep, shared_storage, "hydra.sweeper.n_trials=4") for _ in range(2)]
    for worker in workers:
        _, err = worker.communicate(timeout=900)
        assert worker.returncode == 0, err[-3000:]
        assert "Traceback" not in err, err[-3000:]
    trials = load_shared(shared_storage).trials
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials) >= 4
    lrs = [t.params["optim.lr"] for t in trials]
    assert len(set(lrs)) == len(lrs)  # no two trials train the same configuration
    folders = [Path(t.user_attrs["run_dir"]) for t in trials]
    assert [f.name for f in folders] == [str(t.number) for t in trials]  # named by trial
    for trial, folder in zip(trials, folders, strict=True):  # each folder is its trial's
        config = OmegaConf.load(folder / "config.yaml")
        assert config.optuna.trial_number == trial.number
        assert config.optim.lr == trial.params["optim.lr"]
        assert json.loads((folder / "result.json").read_text())["state"] == "complete"


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_repeating_a_configuration(tmp_path):
    """kill -9 of the whole sweep during its second trial, then the same command again."""
    storage, sweep = f"sqlite:///{tmp_path / 'study.db'}", tmp_path / "sweep"
    worker = start_sweep(sweep, storage, "hydra.sweeper.n_trials=3")
    second = sweep / "1" / "result.json"
    deadline = time.monotonic() + 600
    while not (second.exists() and "running" in second.read_text()):
        assert worker.poll() is None and time.monotonic() < deadline, worker.stderr.read()
        time.sleep(0.2)
    os.killpg(worker.pid, signal.SIGKILL)
    worker.wait()

    again = start_sweep(sweep, storage, "hydra.sweeper.n_trials=3")
    _, err = again.communicate(timeout=900)
    assert again.returncode == 0, err[-3000:]
    trials = load_shared(storage).trials
    killed = trials[1]
    assert killed.state == optuna.trial.TrialState.FAIL
    assert json.loads(second.read_text())["state"] == "failed"  # the folder agrees
    assert "interrupted" in json.loads(second.read_text())["error"]
    lrs = [t.params["optim.lr"] for t in trials]
    assert len(set(lrs)) == len(lrs)  # the resumed sampler proposes new values
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(done) == 3


def load_shared(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="shared", storage=storage_object(storage))


@pytest.mark.slow
def test_the_submitit_launcher_runs_trials_side_by_side_each_under_accelerate(tmp_path):
    """What a SLURM sweep does (hydra/launcher=submitit_slurm), with local processes."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = sweep(
        tmp_path,
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=20",
        "launcher=multigpu",
        "launcher.num_processes=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.pruner=none",
        "train.max_steps=2",
        "eval.every_n_steps=null",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    trials = load(tmp_path).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:
        result = json.loads((Path(trial.user_attrs["run_dir"]) / "result.json").read_text())
        assert result["num_processes"] == 2 and result["weights_in_sync"]


@pytest.mark.slow
def test_the_same_grid_command_again_continues_its_sweep_folder(tmp_path):
    """No hydra.sweep.dir given: the second run of the command finds the first one's folder."""
    name = f"rerun-test-{os.getpid()}"
    grid = ("-m", "hydra/sweeper=grid", "optim.lr=1e-5,2e-5", "train.max_steps=2",
            "eval.enabled=false", "prior=off", "tracker=disk", f"sweep_name={name}")  # fmt: skip
    env = {"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    try:
        first = train_py(*grid, timeout=600, env=env)
        assert first.returncode == 0, first.stderr[-3000:]
        second = train_py(*grid, timeout=600, env=env)
        assert second.returncode == 0, second.stderr[-3000:]
        folders = list((ROOT / "outputs" / "sweeps" / name).iterdir())
        assert len(folders) == 1, folders  # one sweep folder, continued
        assert "resuming" in second.stdout + second.stderr
        assert (second.stdout + second.stderr).count("is already complete; nothing to do") == 2
    finally:
        shutil.rmtree(ROOT / "outputs" / "sweeps" / name, ignore_errors=True)
