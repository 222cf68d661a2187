"""Shared fixtures: the real config tree composed with overrides, outputs in a temp dir. Plain
helpers are in tests/helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import FAST, MARKUP_PROMPTS, OFFLINE, SEARCH, multirun


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the session, as for the runs of a sweep (class images made once)."""
    return tmp_path_factory.mktemp("cache")


# One CPU thread per run: several tests start runs side by side (sweep workers), and two
# OpenMP threads per process on two busy cores slow a step down many-fold.
# Set before any test module imports torch (which reads it once); a value given wins.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
for _name, _value in ONE_THREAD.items():
    os.environ.setdefault(_name, _value)


@pytest.fixture(scope="session", autouse=True)
def _isolated_env(shared_cache):
    """W&B offline, the test cache, no hub: nothing touches ~/.cache or the network. Session
    scope, so that module and session fixtures (which run before function fixtures) get it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DREAMSWEEP_CACHE_DIR", str(shared_cache))
        for name, value in OFFLINE.items():
            patch.setenv(name, value)

        yield


@pytest.fixture(scope="session")
def demo_grid(tmp_path_factory):
    """The demo preset, small: prior on/off x a good and an invalid learning rate. Steps and
    schedulers fold, so 2 runs train (12 steps -> 2,4) and 2 fail on their setting."""
    root = tmp_path_factory.mktemp("demo_grid")
    proc = multirun(
        root / "sweep",
        "+sweep=demo",
        *FAST,  # after the preset: the tiny model and its small settings win
        "optim.lr=1e-3,-1",
        "train.max_steps=2,4",
        MARKUP_PROMPTS,
        cache=root / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep", proc


@pytest.fixture(scope="session")
def pruned_search(tmp_path_factory):
    """A small Optuna search (demo_search preset) in which the median pruner stops a bad
    learning rate; a trial left RUNNING by a killed sweep process is in the study first."""
    import socket

    import optuna

    root = tmp_path_factory.mktemp("search")
    storage = f"sqlite:///{root / 'study.db'}"
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = optuna.create_study(study_name="s", storage=storage, direction="maximize").ask()
    stale.set_user_attr("sweeper", {"host": socket.gethostname(), "pid": int(dead)})
    proc = multirun(
        root / "sweep",
        "+sweep=demo_search",
        *FAST,
        *SEARCH,
        "hydra.sweeper.n_trials=4",
        "optim.lr=choice(1e-3,1e-5,3.0)",
        f"hydra.sweeper.storage={storage}",
        "hydra.sweeper.study_name=s",
        cache=root / "cache",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root / "sweep", storage


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server on a Unix socket (skipped where none is installed)."""
    pytest.importorskip("psycopg")
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not binaries:
        pytest.skip("PostgreSQL server binaries are not installed (Debian: postgresql)")
    pg, root = binaries[-1], Path(tempfile.mkdtemp(prefix="dreamsweep-pg-"))
    as_owner = []
    if os.geteuid() == 0:  # initdb refuses to run as root; pytest's tmp dirs are root-only
        shutil.chown(root, "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    # A Unix socket in a folder of its own and no TCP: no port to choose or clash on.
    data, options = root / "data", f"-k {root} -c listen_addresses=''"
    subprocess.run(
        [*as_owner, pg / "initdb", "-D", data, "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*as_owner, pg / "pg_ctl", "-D", data, "-l", root / "log", "-w", "-o", options, "start"],
        check=True,
        capture_output=True,
    )
    yield f"postgresql+psycopg://postgres@/postgres?host={root}"
    subprocess.run(
        [*as_owner, pg / "pg_ctl", "-D", data, "-m", "fast", "stop"], capture_output=True
    )
    shutil.rmtree(root, ignore_errors=True)
