"""The CPU thread count of a run is recorded in its config.yaml, and a resume uses it: results
depend on it (float sums split across threads), so a resumed run must not change it silently."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
from omegaconf import OmegaConf

from dreamsweep import launch
from dreamsweep.launch import cpu_threads, run_threads, run_training
from tests.helpers import FAST, ROOT, compose_config


def policy_of_two() -> tuple[int, str]:
    return 2, "2 free of 2 core(s) / (1 run(s) side by side x 1 process(es))"


def never_asked() -> tuple[int, str]:
    raise AssertionError("the policy is not asked when the count is known")


def test_a_first_start_takes_the_policy_s_share_or_what_it_is_told():
    assert run_threads(None, None, {}, policy_of_two).why.startswith("2 = 2 free of 2")
    told = run_threads(3, None, {}, never_asked)
    assert (told.record, told.to_set, told.warn) == (3, 3, False)
    user = run_threads(None, None, {"OMP_NUM_THREADS": "1"}, never_asked)
    assert (user.record, user.to_set, user.warn) == (1, None, False)  # the user's stands
    odd = run_threads(None, None, {"OMP_NUM_THREADS": "many"}, never_asked)
    assert (odd.record, odd.to_set) == (None, None)  # not a count: nothing to record


def test_a_resume_uses_the_recorded_count_or_says_in_one_line_why_not():
    resumed = run_threads(None, 1, {}, never_asked)  # the policy would say 2
    assert (resumed.record, resumed.to_set, resumed.warn) == (1, 1, False)
    assert "as this run started" in resumed.why
    same = run_threads(None, 1, {"OMP_NUM_THREADS": "1"}, never_asked)
    assert (same.record, same.to_set, same.warn) == (1, None, False)

    other = run_threads(None, 1, {"OMP_NUM_THREADS": "2"}, never_asked)
    assert (other.record, other.to_set, other.warn) == (1, None, True)  # config.yaml keeps 1
    assert other.why.startswith("OMP_NUM_THREADS=2 as set, not 1 (as this run started")
    assert "unset OMP_NUM_THREADS to use 1" in other.why and "\n" not in other.why

    told = run_threads(2, 1, {}, never_asked)
    assert (told.record, told.to_set, told.warn) == (1, 2, True)
    assert "leave launcher.threads out to use 1" in told.why
    both = run_threads(2, None, {"OMP_NUM_THREADS": "3"}, never_asked)  # a first start
    assert (both.record, both.to_set, both.warn) == (3, None, True)


SETTINGS = (
    *FAST,
    "train.max_steps=30",
    "train.checkpoint_every=5",
    "eval.enabled=false",
    "ema=off",
)


def start_and_kill(run_dir, at_step: int, env: dict, log) -> None:
    """`python train.py` killed (SIGKILL) once its checkpoint at `at_step` is written."""
    cmd = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *SETTINGS]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            start_new_session=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )
        deadline = time.time() + 300
        while not (run_dir / "checkpoints" / f"step_{at_step:06d}").exists():
            assert proc.poll() is None and time.time() < deadline, "run ended before the kill"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def recorded(run_dir) -> int | None:
    return OmegaConf.load(run_dir / "config.yaml").launcher.threads


@pytest.mark.slow
def test_a_resumed_run_keeps_the_thread_count_it_started_with(tmp_path, monkeypatch, caplog):
    run_dir = tmp_path / "run"
    start_and_kill(run_dir, 10, {"OMP_NUM_THREADS": "1"}, tmp_path / "first.log")
    assert recorded(run_dir) == 1

    # Resumed with another OMP_NUM_THREADS: it stands, and one warning line says so.
    start_and_kill(run_dir, 20, {"OMP_NUM_THREADS": "2"}, tmp_path / "second.log")
    lines = [
        line
        for line in (tmp_path / "second.log").read_text().splitlines()
        if "CPU threads per process" in line
    ]
    assert len(lines) == 1 and "[WARNING]" in lines[0]
    assert "OMP_NUM_THREADS=2 as set, not 1 (as this run started" in lines[0]
    assert recorded(run_dir) == 1

    # Resumed where the policy would choose 2 threads (2 idle cores, one run): it uses 1.
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(launch, "available_cores", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert cpu_threads(1, 1, launch.available_cores(), os.getloadavg()[0])[0] == 2
    with caplog.at_level(logging.INFO, logger="dreamsweep"):
        run_training(compose_config(*SETTINGS), run_dir)
    assert "CPU threads per process: 1 (as this run started" in caplog.text
    result = json.loads((run_dir / "result.json").read_text())
    assert result["state"] == "complete" and result["threads"] == 1  # the worker's torch
    assert recorded(run_dir) == 1
