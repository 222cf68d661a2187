"""Independent workers on one study (`dreamsweep worker`): each trial once, killed workers'
trials retried from their checkpoints, grids as queued trials, and the launch recipes."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import optuna
import pytest

from dreamsweep.runs import checkpoint_dirs
from dreamsweep.sweeps.pool import RetryInItsFolder, failed_runs
from dreamsweep.sweeps.slots import slot_envs
from dreamsweep.sweeps.study import storage_object
from tests.helpers import FAST, MARKUP_PROMPTS, OFFLINE, ROOT

State = optuna.trial.TrialState
COMPLETE, PRUNED, FAIL, WAITING, RUNNING = (
    State.COMPLETE, State.PRUNED, State.FAIL, State.WAITING, State.RUNNING
)  # fmt: skip
RECOVERY = ("hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=4")
# No kill in these tests: a grace period a loaded machine's SQLite never misses
CALM = ("hydra.sweeper.heartbeat_interval=2", "hydra.sweeper.grace_period=60")


def start_worker(log: Path, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`dreamsweep worker ...` in the background, in a process group of its own (a machine
    that dies takes its training process with it: kill the group)."""
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "dreamsweep.cli", "worker", *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **OFFLINE, **(env or {})},
            start_new_session=True,
        )


def finish(workers: list[subprocess.Popen], logs: list[Path], timeout: float = 600) -> None:
    for worker, log in zip(workers, logs, strict=True):
        worker.wait(timeout=timeout)
        text = log.read_text()
        assert worker.returncode == 0, text[-3000:]
        assert "Traceback" not in text, text[-3000:]


def study_of(storage: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage_object(storage))


def test_slots_get_gpus_of_their_own_or_one_cpu_thread_each():
    assert [e["CUDA_VISIBLE_DEVICES"] for e in slot_envs(2, {}, ["4", "5", "6", "7"])] == [
        "4,5",
        "6,7",
    ]
    cpu = slot_envs(3, {"PATH": "/bin"}, [])
    assert [e["OMP_NUM_THREADS"] for e in cpu] == ["1"] * 3 and cpu[0]["PATH"] == "/bin"
    assert slot_envs(2, {"OMP_NUM_THREADS": "4"}, [])[1]["OMP_NUM_THREADS"] == "4"  # as set
    with pytest.raises(ValueError, match="needs at least 3 GPUs"):
        slot_envs(3, {}, ["0", "1"])


def test_a_trial_without_heartbeats_is_retried_with_its_folder_and_scores(tmp_path):
    """Optuna's heartbeat mechanics as the workers use them, on a real SQLite study."""
    url = f"sqlite:///{tmp_path / 'study.db'}"
    storage = optuna.storages.RDBStorage(
        url,
        heartbeat_interval=1,
        grace_period=2,
        heartbeat_stale_trial_callback=RetryInItsFolder(max_retry=1),
    )
    study = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    dead.set_user_attr("run_dir", str(tmp_path / "0"))
    dead.report(0.5, 2)
    storage.record_heartbeat(dead._trial_id)  # then its worker dies
    time.sleep(3)
    optuna.storages.fail_stale_trials(study)
    first, retry = study.get_trials()
    assert first.state == FAIL and retry.state == WAITING
    assert retry.params == first.params and retry.user_attrs["run_dir"] == str(tmp_path / "0")
    assert retry.intermediate_values == {2: 0.5}  # the score reported before the kill stays
    assert failed_runs(study) == 0  # a worker died, no run failed: not a failure of the search
    again = study.ask()  # the queue first: the next worker takes the retry
    assert again.number == retry.number
    storage.record_heartbeat(again._trial_id)
    time.sleep(3)
    optuna.storages.fail_stale_trials(study)  # max_retry=1: not queued again
    assert [t.state for t in study.get_trials()] == [FAIL, FAIL]
    assert failed_runs(study) == 1  # the run, once
    result = json.loads((tmp_path / "0" / "result.json").read_text())
    assert result["state"] == "failed" and "interrupted" in result["error"]


DRAIN = (  # the demo search cut short: one evaluation at the end, nothing pruned
    "+sweep=demo_search",
    *FAST,
    "train.max_steps=2",
    "eval.every_n_steps=null",
    "hydra.sweeper.pruner=none",
    "hydra.sweeper.n_trials=6",
    "hydra.sweeper.study_name=drain",
    *CALM,
)
SLURM = ROOT / "deploy" / "slurm" / "worker.sbatch"


def slurm_task(log: Path, storage: str, sweep: Path, *args: str) -> subprocess.Popen:
    """One array task of deploy/slurm/worker.sbatch, run by bash as Slurm would run it."""
    env = {
        **os.environ,
        **OFFLINE,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "SLURM_SUBMIT_DIR": str(ROOT),
        "DREAMSWEEP_OPTUNA_STORAGE": storage,  # the URL only in the environment
        "DREAMSWEEP_SWEEP_DIR": str(sweep),
    }
    with open(log, "w") as out:
        return subprocess.Popen(
            ["bash", str(SLURM), *args],
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def storage_of(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return request.getfixturevalue("postgres_url")


# Each test runs on one storage by default and on the other with -m exhaustive (suite time)
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.exhaustive)])
def storage_url(request, tmp_path):
    return storage_of(request, tmp_path)


@pytest.fixture(params=[pytest.param("sqlite", marks=pytest.mark.exhaustive), "postgresql"])
def storage(request, tmp_path):
    return storage_of(request, tmp_path)


@pytest.mark.slow
def test_three_slurm_array_tasks_drain_a_search_each_trial_once(tmp_path, storage_url):
    """Three tasks of the Slurm script (locally) on one study: 6 trials, 6 folders, none twice."""
    sweep = tmp_path / "sweep"
    logs = [tmp_path / f"task{i}.log" for i in range(3)]
    workers = [slurm_task(log, storage_url, sweep, *DRAIN) for log in logs]
    finish(workers, logs)
    every = study_of(storage_url, "drain").trials
    trials = [t for t in every if "not_run" not in t.user_attrs]  # asked past n_trials at once
    assert [t.state for t in trials] == [COMPLETE] * 6
    assert all(t.state == FAIL for t in every if t not in trials)
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert folders == sorted(str(t.number) for t in trials)  # one folder per trial
    assert len({t.params["optim.lr"] for t in trials}) == 6  # no configuration twice
    runs = [json.loads((sweep / f / "result.json").read_text()) for f in folders]
    assert sorted(r["optuna"]["trial"] for r in runs) == sorted(t.number for t in trials)
    ran = [re.search(r"ran trial\(s\) \[([\d, ]*)\]", log.read_text())[1] for log in logs]
    assert all(ran), ran  # every task took trials: they ran side by side


@pytest.mark.slow
def test_a_grid_enqueued_and_drained_by_two_workers_reports_as_the_one_process_grid(
    demo_grid, tmp_path
):
    """The demo_grid fixture's grid (2 training runs, 2 invalid) put in a study's queue with
    `dreamsweep enqueue` and run by two workers: every run once, the same cells and scores."""
    from dreamsweep.report.collect import collect

    one_process, _ = demo_grid
    storage, sweep = f"sqlite:///{tmp_path / 'grid.db'}", tmp_path / "queued"
    grid = ("+sweep=demo", *FAST, "optim.lr=1e-3,-1", "train.max_steps=2,4", MARKUP_PROMPTS,
            f"hydra.sweeper.storage={storage}", *CALM)  # fmt: skip
    env = {**os.environ, **OFFLINE, "DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    enqueue = [sys.executable, "-m", "dreamsweep.cli", "enqueue", *grid, f"hydra.sweep.dir={sweep}"]
    for _ in range(2):  # enqueuing again adds nothing
        proc = subprocess.run(enqueue, cwd=ROOT, capture_output=True, text=True, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
    said = proc.stdout + proc.stderr
    assert "4 training run(s)" in said and "0 put in the queue" in said, said
    assert json.loads((sweep / "plan.json").read_text()) == json.loads(
        (one_process / "plan.json").read_text()
    )
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    env = {"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    finish([start_worker(log, *grid, env=env) for log in logs], logs)

    trials = study_of(storage, "demo").trials
    assert len(trials) == 4 and sorted(t.user_attrs["job"] for t in trials) == [0, 1, 2, 3]
    states = {t.user_attrs["job"]: t.state for t in trials}
    results = {int(p.name): json.loads((p / "result.json").read_text())["state"]
               for p in sweep.iterdir() if p.is_dir()}  # fmt: skip
    assert results == {j: ("complete" if s == COMPLETE else "failed") for j, s in states.items()}
    assert sorted(results.values()) == ["complete", "complete", "failed", "failed"]

    def cells(folder: Path) -> list[tuple]:
        return sorted((c.run, c.cell, c.objective, sorted(c.scores.items()))
                      for c in collect(folder).cells)  # fmt: skip

    assert cells(sweep) == cells(one_process)
    assert collect(sweep).study is None  # the queue is not a search: reported as a grid


KILLABLE = (  # a search whose trials live long enough to be killed after a checkpoint
    "+sweep=demo_search",
    *FAST,
    "train.max_steps=12",
    "train.checkpoint_every=3",
    "eval.every_n_steps=3",
    "hydra.sweeper.pruner=none",
    "hydra.sweeper.n_trials=1",  # the other worker waits: a retry may come
    "hydra.sweeper.study_name=pool",
    *RECOVERY,
)


@pytest.mark.slow
def test_a_killed_worker_s_trial_is_retried_from_its_checkpoint(tmp_path, storage):
    """Two Slurm array tasks; the one whose trial has a checkpoint is killed -9 (with its
    training process, as when a node dies). The other marks the trial stale within the grace
    period, retries it, and the retry resumes the run folder: no step twice, no score lost."""
    sweep = tmp_path / "sweep"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    workers = [slurm_task(log, storage, sweep, *KILLABLE) for log in logs]
    victim, deadline = None, time.monotonic() + 400
    while victim is None:
        assert time.monotonic() < deadline, logs[0].read_text()[-2000:]
        time.sleep(0.3)
        try:
            running = study_of(storage, "pool").get_trials(states=(RUNNING,))
        except KeyError:  # the study is not there yet
            continue
        for trial in running:
            if checkpoint_dirs(Path(trial.user_attrs.get("run_dir", "-")) / "checkpoints"):
                victim = trial  # a complete checkpoint to resume from
    pid = victim.user_attrs["sweeper"]["pid"]
    killed = next(w for w in workers if w.pid == pid)
    os.killpg(killed.pid, signal.SIGKILL)
    killed_at = datetime.now()
    killed.wait()
    folder = Path(victim.user_attrs["run_dir"])
    before = json.loads(folder.joinpath("result.json").read_text())
    assert before["state"] == "running"
    dead_scores = study_of(storage, "pool").trials[victim.number].intermediate_values

    survivor = next(w for w in workers if w is not killed)
    finish([survivor], [logs[workers.index(survivor)]])
    trials = study_of(storage, "pool").trials
    dead = trials[victim.number]
    assert dead.state == FAIL
    assert (dead.datetime_complete - killed_at).total_seconds() < 4 + 3  # grace + a beat or two
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == victim.number]
    assert retry.state == COMPLETE and retry.user_attrs["run_dir"] == str(folder)
    assert retry.params == dead.params
    assert set(retry.intermediate_values) == {3, 6, 9, 12}
    assert all(retry.intermediate_values[s] == v for s, v in dead_scores.items())
    ran = [t for t in trials if t is not dead and "not_run" not in t.user_attrs]
    assert all(t.state in (COMPLETE, PRUNED) for t in ran)
    out = logs[workers.index(survivor)].read_text()
    assert "resuming from the checkpoint at step" in out
    rows = [json.loads(line) for line in folder.joinpath("metrics.jsonl").read_text().splitlines()]
    train = [r["step"] for r in rows if r["kind"] == "train"]
    evals = [(r["step"], r["cell"]) for r in rows if r["kind"] == "eval"]
    assert train == sorted(set(train)) and max(train) == 12  # continued, nothing twice
    assert len(evals) == len(set(evals))
    result = json.loads(folder.joinpath("result.json").read_text())
    assert result["state"] == "complete" and result["optuna"]["trial"] == retry.number
    assert [p.name for p in sweep.iterdir() if p.is_dir()] == ["0"]  # the retry made none


DEPLOY = ROOT / "deploy"
# a URL with a password in it: scheme://user:secret@ (a $VARIABLE in its place is fine)
WRITTEN_PASSWORD = re.compile(r"://[^/\s:@]+:(?!\$)[^@\s/]+@")


def manifests(name: str) -> list[dict]:
    import yaml

    return [d for d in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if d]


def test_no_launch_recipe_holds_a_storage_password():
    files = [p for p in DEPLOY.rglob("*") if p.is_file()]
    assert len(files) >= 6
    assert not [p for p in files if WRITTEN_PASSWORD.search(p.read_text())]


def test_the_kubernetes_workers_share_one_study_and_one_rwx_volume():
    """What `kubectl apply` needs to fit together (no API server here for a dry run)."""
    (job,) = manifests("workers.yaml")
    (claim,) = manifests("shared-volume.yaml")
    service, database = manifests("postgres.yaml")
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["parallelism"] == spec["completions"]
    pod = spec["template"]["spec"]
    (worker,) = pod["containers"]
    assert pod["restartPolicy"] == "Never" and worker["command"] == ["dreamsweep", "worker"]
    preset = next(a for a in worker["args"] if a.startswith("+sweep="))
    assert (ROOT / "conf" / "sweep" / f"{preset.split('=')[1]}.yaml").exists()
    env = {e["name"]: e for e in worker["env"]}
    url = env["DREAMSWEEP_OPTUNA_STORAGE"]["valueFrom"]["secretKeyRef"]
    db_env = {e["name"]: e for e in database["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert url["name"] == db_env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert not any("value" in e and "://" in str(e["value"]) for e in worker["env"])
    (mount,) = worker["volumeMounts"]
    (volume,) = pod["volumes"]
    assert volume["name"] == mount["name"]
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    sweep_dir = next(a for a in worker["args"] if a.startswith("hydra.sweep.dir="))
    assert sweep_dir.split("=", 1)[1].startswith(mount["mountPath"] + "/")  # on the volume
    assert env["DREAMSWEEP_CACHE_DIR"]["value"].startswith(mount["mountPath"] + "/")
    labels = database["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"] == labels == database["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["name"] == database["spec"]["serviceName"]


def test_the_skypilot_task_runs_a_worker_with_the_url_as_a_secret():
    import yaml

    task = yaml.safe_load((DEPLOY / "skypilot" / "worker.yaml").read_text())
    known = {"name", "workdir", "resources", "envs", "secrets", "file_mounts", "setup", "run",
             "num_nodes"}  # fmt: skip
    assert set(task) <= known
    assert task["secrets"] == {"DREAMSWEEP_OPTUNA_STORAGE": None}  # given with --secret
    assert "DREAMSWEEP_OPTUNA_STORAGE" not in task["envs"]
    assert "dreamsweep worker ${SWEEP_ARGS}" in task["run"]
    shared = next(iter(task["file_mounts"]))
    assert f"hydra.sweep.dir={shared}/" in task["run"]  # run folders where all workers see them
    preset = task["envs"]["SWEEP_ARGS"].split()[0]
    assert (ROOT / "conf" / "sweep" / f"{preset.split('=')[1]}.yaml").exists()


@pytest.mark.parametrize(
    ("command", "preset", "said"),
    [
        ("worker", "+sweep=demo", "has no queued grid; put its runs there first"),
        ("enqueue", "+sweep=demo_search", "dreamsweep enqueue takes a grid"),
    ],
)
def test_a_worker_or_queue_for_the_wrong_kind_of_sweep_says_what_to_do(
    tmp_path, command, preset, said
):
    storage = f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}"
    proc = subprocess.run(
        [sys.executable, "-m", "dreamsweep.cli", command, preset, storage,
         f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, **OFFLINE},
    )  # fmt: skip
    assert proc.returncode == 1 and said in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


def test_on_a_journal_a_dead_process_s_trial_is_retried_once(tmp_path):
    """No heartbeats in Optuna's journal storage: a trial whose worker process is gone from
    this host is stale; two workers that both see it queue one retry between them."""
    from types import SimpleNamespace

    from dreamsweep.sweeps.pool import Worker

    url = f"journal:{tmp_path / 'study.journal'}"
    study = optuna.create_study(study_name="j", storage=storage_object(url))
    dead = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    dead.set_user_attr("sweeper", {"host": socket.gethostname(), "pid": int(gone)})
    dead.set_user_attr("run_dir", str(tmp_path / "0"))
    dead.report(0.25, 3)
    store = optuna.storages.get_storage(storage_object(url))
    workers = [
        Worker(SimpleNamespace(study=study), store, RetryInItsFolder(3), heartbeats=False)
        for _ in range(2)
    ]
    for worker in workers:
        worker.recover()
    first, retry = study.get_trials()
    assert first.state == FAIL and retry.state == WAITING
    assert retry.user_attrs["run_dir"] == str(tmp_path / "0")
    assert retry.intermediate_values == {3: 0.25}


def test_workers_asking_at_once_never_run_more_than_n_trials(tmp_path):
    """Three workers counted 1 trial of 2 running and asked together: the third is not run."""
    from dreamsweep.sweeps.pool import over_budget

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'study.db'}")
    first, second, third = (study.ask() for _ in range(3))
    assert not over_budget(study, first, 2) and not over_budget(study, second, 2)
    assert over_budget(study, third, 2)
    assert study.trials[2].state == FAIL and "not_run" in study.trials[2].user_attrs
    assert failed_runs(study) == 0  # a trial never run is not a failed run
    retry = study.ask()
    retry.set_user_attr("run_dir", str(tmp_path / "0"))  # a dead worker's trial: always runs
    assert not over_budget(study, retry, 2)
