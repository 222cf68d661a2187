"""Hostile files and secrets: a run folder holds no code a resume would run, and a storage
password reaches no file, log or weight metadata."""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from dreamsweep.secrets import mask_sweep_config, mask_url, real_storage
from tests.helpers import FAST, ROOT, train_cli, train_py

pytestmark = pytest.mark.slow


class Planted:
    """Unpickling this runs a command: what a file planted in a shared run folder would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (shutil.copy, (sys.executable, str(self.marker)))


def test_a_planted_pickle_in_a_checkpoint_is_never_run(tmp_path):
    run = tmp_path / "run"
    settings = (*FAST, "train.max_steps=6", "train.checkpoint_every=3")
    assert train_cli(run, *settings).returncode == 0
    checkpoint = run / "checkpoints" / "step_000003"
    assert (checkpoint / "ema.safetensors").exists()  # the EMA as tensors, not a pickle
    assert not list(checkpoint.glob("custom_checkpoint_*"))
    marker = tmp_path / "pwned"
    for name in ("custom_checkpoint_0.pkl", "ema.pkl"):
        (checkpoint / name).write_bytes(pickle.dumps(Planted(marker)))
    shutil.rmtree(run / "model")
    (run / "result.json").unlink()  # as a run killed after its checkpoint leaves it

    resumed = train_cli(run, *settings)
    assert not marker.exists()  # refused before anything was loaded
    assert resumed.returncode == 1
    errors = [line for line in resumed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "custom_checkpoint_0.pkl" in errors[0], resumed.stderr[-2000:]
    assert "refusing to resume" in errors[0] and "Traceback" not in resumed.stderr

    (checkpoint / "custom_checkpoint_0.pkl").unlink()  # ema.pkl stays: it is never read
    import torch

    optimizer = checkpoint / "optimizer.bin"
    kept = optimizer.read_bytes()
    torch.save({"state": Planted(marker), "param_groups": []}, optimizer)  # tampered
    resumed = train_cli(run, *settings)
    assert not marker.exists() and resumed.returncode == 1
    errors = [line for line in resumed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "optimizer.bin holds more than tensors" in errors[0]
    assert "weights_only=False" not in resumed.stderr and "Traceback" not in resumed.stderr

    optimizer.write_bytes(kept)
    resumed = train_cli(run, *settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint at step 3" in resumed.stdout
    assert not marker.exists()


def test_a_storage_url_is_shown_without_its_password(monkeypatch):
    url = "postgresql+psycopg://sweeper:s3cret@db.example/studies"
    assert mask_url(url) == "postgresql+psycopg://sweeper:***@db.example/studies"
    assert mask_url("sqlite:///outputs/optuna/demo.db") == "sqlite:///outputs/optuna/demo.db"
    monkeypatch.setenv("DREAMSWEEP_OPTUNA_STORAGE", url)
    assert real_storage(mask_url(url)) == url
    monkeypatch.delenv("DREAMSWEEP_OPTUNA_STORAGE")
    with pytest.raises(ValueError, match="DREAMSWEEP_OPTUNA_STORAGE"):
        real_storage(mask_url(url))


def test_a_postgresql_password_reaches_no_file_log_or_metadata(postgres_url, tmp_path):
    secret = "s3cretPW"
    storage = postgres_url.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    sweep = tmp_path / "sweep"
    proc = train_py(
        "-m", "+sweep=demo_search", *FAST, "train.max_steps=2", "eval.every_n_steps=null",
        "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "tracker=wandb",
        f"hydra.sweeper.storage='{storage}'", "hydra.sweeper.study_name=secret",
        f"hydra.sweep.dir={sweep}", timeout=900, env={"WANDB_MODE": "offline"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert secret not in proc.stdout + proc.stderr
    files = [p for p in sweep.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)  # weights with their metadata
    assert any("wandb" in p.parts for p in files)  # the offline W&B runs
    leaking = [p for p in files if secret.encode() in p.read_bytes()]
    assert leaking == []
    import os

    from dreamsweep.report.collect import collect

    os.environ["DREAMSWEEP_OPTUNA_STORAGE"] = storage  # how a report reads a masked study
    try:
        assert collect(sweep).study is not None
    finally:
        del os.environ["DREAMSWEEP_OPTUNA_STORAGE"]


def test_a_sweep_config_holds_the_masked_url_before_any_job_file_is_written():
    """The config Hydra writes each job's .hydra/*.yaml from (and recomposes jobs from)."""
    from omegaconf import OmegaConf

    url = "postgresql+psycopg://sweeper:s3cret@db.example/studies"
    given = OmegaConf.create({"hydra": {"sweeper": {"storage": url}, "overrides": {"hydra": [
        f"hydra.sweeper.storage='{url}'", "hydra.sweep.dir=x"]}}})  # fmt: skip
    from_a_file = OmegaConf.create({"hydra": {"sweeper": {"storage": url},
                                              "overrides": {"hydra": []}}})  # fmt: skip
    sqlite = OmegaConf.create({"hydra": {"sweeper": {"storage": "sqlite:///s.db"},
                                         "overrides": {"hydra": []}}})  # fmt: skip
    for config in (given, from_a_file, sqlite):
        OmegaConf.set_readonly(config.hydra, True)  # as Hydra hands it over
        mask_sweep_config(config)
    for config in (given, from_a_file):
        assert "s3cret" not in OmegaConf.to_yaml(config)
        assert config.hydra.sweeper.storage == mask_url(url)
        assert f"hydra.sweeper.storage='{mask_url(url)}'" in config.hydra.overrides.hydra
    assert sqlite.hydra.sweeper.storage == "sqlite:///s.db" and not sqlite.hydra.overrides.hydra


def _secret_search(postgres_url: str, sweep: Path, *overrides: str) -> list[str]:
    secret = "Hunter2SecretPW"
    storage = postgres_url.replace("postgres@", f"postgres:{secret}@")  # trust auth ignores it
    return [
        sys.executable, str(ROOT / "train.py"), "-m", "+sweep=demo_search", *FAST,
        "hydra.sweeper.n_trials=2", "hydra.sweeper.pruner=none", "eval.every_n_steps=null",
        f"hydra.sweeper.storage='{storage}'", f"hydra.sweeper.study_name={sweep.name}",
        f"hydra.sweep.dir={sweep}", *overrides,
    ]  # fmt: skip


def _files_with(secret: str, root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


def test_a_sweep_killed_mid_trial_leaves_no_password_in_any_file(postgres_url, tmp_path):
    import os
    import signal
    import time

    sweep = tmp_path / "killed"
    proc = subprocess.Popen(
        _secret_search(postgres_url, sweep), cwd=ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.time() + 600
    while not (sweep / "0" / "checkpoints" / "step_000003").exists():  # mid-trial
        assert proc.poll() is None and time.time() < deadline, "the sweep ended before the kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (sweep / "0" / ".hydra" / "hydra.yaml").exists()  # Hydra's job files were written
    assert not (sweep / "0" / "model").exists()  # killed before the trial's end
    assert _files_with("Hunter2SecretPW", sweep) == []


def test_a_sweep_ended_by_max_failure_rate_leaves_no_password_in_any_file(postgres_url, tmp_path):
    sweep = tmp_path / "failing"
    command = _secret_search(
        postgres_url, sweep, "optim.lr=choice(-1)", "hydra.sweeper.max_failure_rate=0"
    )
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "max_failure_rate=0" in proc.stderr, proc.stderr[-3000:]
    assert "Hunter2SecretPW" not in proc.stdout + proc.stderr
    assert (sweep / "0" / ".hydra" / "hydra.yaml").exists()
    assert _files_with("Hunter2SecretPW", sweep) == []


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], dict, str]]:
    """case -> (overrides, environment, what the one line must name)."""
    text_file = tmp / "model.txt"
    text_file.write_text("not a model")
    empty = tmp / "empty"
    empty.mkdir()
    fake = tmp / "fake.safetensors"
    fake.write_bytes(b"definitely not tensors")
    blocker = tmp / "a-file"
    blocker.write_text("x")
    photos = tmp / "photos"
    photos.mkdir()
    from PIL import Image

    for i in range(3):
        Image.new("RGB", (96, 96), "red").save(photos / f"dog{i}.png")
    (photos / "dog0.txt").write_bytes("un chien \xe0 la plage".encode("latin-1"))
    linked = tmp / "linked"
    shutil.copytree(photos, linked)
    (linked / "dog0.txt").unlink()
    (linked / "dog1.txt").symlink_to("/etc/passwd")
    real = ["model=sd15", "data=folder", f"data.instance_dir={photos}", "data.class_name=dog"]
    return {
        "missing model path": (
            ["model=sd15", "model.path=/nowhere"], {}, "/nowhere does not exist"
        ),
        "text file as model": (
            ["model=sd15", f"model.path={text_file}"], {}, "model.txt is a file"
        ),
        "empty model folder": (["model=sd15", f"model.path={empty}"], {}, "is an empty folder"),
        "fake safetensors": (
            ["model=sd15", f"model.path={fake}"], {}, "not a valid safetensors file"
        ),
        "cache under a file": (
            [], {"DREAMSWEEP_CACHE_DIR": str(blocker / "cache")}, "a-file is a file"
        ),
        "non-UTF-8 caption": (
            [*real[1:], "model=tiny", "data.resolution=64"], {}, "dog0.txt is not UTF-8"
        ),
        "caption linked out of the folder": (
            ["data=folder", f"data.instance_dir={linked}", "data.class_name=dog", "model=tiny",
             "data.resolution=64"], {}, "dog1.txt is a link to /etc/passwd"
        ),
    }  # fmt: skip


@contextmanager
def tmpfs(mount: Path, options: str):
    """A tmpfs at ``mount`` (root only), or None where none can be made."""
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)]).returncode:
        yield None
        return
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def read_only(tmp_path):
    """A read-only tmpfs (root only: chmod does not stop root), or None where none can be made."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as mount:
        yield mount


def test_every_bad_input_is_one_line_naming_the_culprit(tmp_path, read_only):
    cases = _bad_inputs(tmp_path)
    if read_only is not None:
        run_dir_override = f"hydra.run.dir={read_only / 'run'}"
        cases["cache on a read-only mount"] = (
            [],
            {"DREAMSWEEP_CACHE_DIR": str(read_only / "cache")},
            "Read-only file system",
        )
        cases["read-only run folder"] = ([run_dir_override], {}, "hydra.run.dir: cannot write")
    for case, (overrides, env, culprit) in cases.items():
        run_dir = tmp_path / "runs" / case.replace(" ", "_")
        if overrides and overrides[0].startswith("hydra.run.dir="):
            run_dir, overrides = Path(overrides[0].split("=", 1)[1]), overrides[1:]
        proc = train_cli(run_dir, *overrides, env=env)
        assert proc.returncode == 1, (case, proc.stderr[-2000:])
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        assert len(errors) == 1 and culprit in errors[0], (case, proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr, (case, proc.stderr[-2000:])


@pytest.fixture
def small_disk(tmp_path):
    """A 13 MB tmpfs: room for one checkpoint of the tiny model (13.2 MB), not two (root only)."""
    with tmpfs(tmp_path / "disk", "size=13m") as mount:
        if mount is None:
            pytest.skip("mounting a tmpfs is not allowed here (needs root)")
        yield mount


def test_a_full_disk_is_one_line_and_the_last_checkpoint_survives(small_disk, tmp_path):
    run = small_disk / "run"
    settings = (*FAST, "eval.enabled=false")
    proc = train_cli(run, *settings, env={"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "rerun the same command" in errors[0]
    result = json.loads((run / "result.json").read_text())
    assert result["state"] == "failed" and "No space left" in result["error"]
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_000003"]  # no .tmp
    assert not list(run.rglob("*.tmp")) and not list(run.rglob(".*.tmp"))

    subprocess.run(["mount", "-o", "remount,size=64m", str(small_disk)], check=True)
    resumed = train_cli(run, *settings, env={"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint at step 3" in resumed.stdout
    assert json.loads((run / "result.json").read_text())["state"] == "complete"


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return errors[0]


def test_a_full_disk_while_accelerate_writes_optimizer_bin_is_one_line(tmp_path):
    """7 MB: the checkpoint's model files fit, torch.save's optimizer.bin does not (torch says
    only "unexpected pos")."""
    with tmpfs(tmp_path / "disk", "size=7m") as disk:
        if disk is None:
            pytest.skip("mounting a tmpfs is not allowed here (needs root)")
        run = disk / "run"
        proc = train_cli(run, *FAST, "eval.enabled=false",
                         env={"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")})  # fmt: skip
        assert proc.returncode == 1
        error = one_error_line(proc)
        assert "optimizer.bin): No space left on device" in error and "MB free" in error
        assert "rerun the same command: the run resumes" in error
        assert "unexpected pos" not in proc.stderr
        assert list((run / "checkpoints").iterdir()) == []  # no half checkpoint


def dreamsweep(*args) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "dreamsweep.cli", *map(str, args)]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("finished") / "run"
    proc = train_cli(run, *FAST, "train.max_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_export_and_report_to_a_full_or_read_only_place_are_one_line(
    finished_run, tmp_path, read_only
):
    if read_only is None:
        pytest.skip("mounting a tmpfs is not allowed here (needs root)")
    run = finished_run
    with tmpfs(tmp_path / "full", "size=64k") as full:
        for place, reason in ((read_only, "Read-only file system"), (full, "No space left")):
            for command in ("export", "report"):
                proc = dreamsweep(command, run, "--out", place / command)
                assert proc.returncode == 1, (command, proc.stderr[-3000:])
                error = one_error_line(proc)
                assert reason in error and f"cannot write to {place / command}" in error
                assert f"rerun the same command: the {command} is written anew" in error
        assert [p for p in full.rglob("*") if p.is_file() or p.name.endswith(".tmp")] == []


def test_what_killed_exports_and_reports_left_goes_at_the_next_start(finished_run, tmp_path):
    """Hidden half folders of processes that are gone; those of a live process stay."""
    import os
    import socket

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    host = socket.gethostname()
    for command in ("report", "export"):
        folder = tmp_path / command
        killed = folder / f".sweep-a.{gone}@{host}.tmp"
        killed.mkdir(parents=True)
        (killed / "half.safetensors").write_bytes(b"half")
        (folder / ".sweep-b.tmp").mkdir()  # as earlier versions named them
        live = folder / f".sweep-c.{os.getpid()}@{host}.tmp"  # being written right now
        live.mkdir()
        proc = dreamsweep(command, finished_run, "--out", folder / "new" if command ==
                          "report" else folder)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
        hidden = sorted(p.name for p in folder.iterdir() if p.name.startswith("."))
        assert hidden == [live.name], command


def test_a_kill_inside_the_swap_of_best_never_lets_a_worse_cell_replace_it(tmp_path):
    """A resume cuts metrics.jsonl back to its checkpoint (step 4), so the kept cell (step 5)
    is only in best/cell.json; a kill between the two renames of a swap left it aside."""
    from dreamsweep.atomic import write_json
    from dreamsweep.best_weights import BestKeeper
    from dreamsweep.runs import RunPaths, append_metrics

    paths = RunPaths(tmp_path / "run")
    paths.root.mkdir()
    cell = {"kind": "eval", "cell": "ddim-n20-g3-ema", "weights": "ema", "scheduler": "ddim"}
    append_metrics(paths, {**cell, "step": 4, "objective": 0.5})
    aside = paths.root / ".best.old"
    aside.mkdir()
    write_json(aside / "cell.json", {**cell, "step": 5, "objective": 0.9})
    keeper = BestKeeper.for_run(None, paths, {})
    assert (paths.root / "best" / "cell.json").exists() and not aside.exists()
    assert keeper.objective == 0.9
    assert keeper.offer([{**cell, "step": 6, "objective": 0.7}], weights={}) is None

    write_json(paths.result, {"state": "failed", "best": {**cell, "step": 7, "objective": 0.95}})
    assert BestKeeper.for_run(None, paths, {}).objective == 0.95  # what result.json recorded
