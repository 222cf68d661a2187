"""`dreamsweep next` on hand-made sweeps: each finding becomes one change of a runnable preset."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import yaml
from hydra import compose, initialize_config_dir

from dreamsweep.cells import Cell, Sampling
from dreamsweep.report.collect import CellRow, Run, Sweep
from dreamsweep.report.next_sweep import preset_text, propose
from dreamsweep.verdicts import CellSamples
from tests.helpers import ROOT

PROMPTS = ["a sks toy on a black background", "a sks toy on a gray background"]


def samples(rate: float, seed: int) -> CellSamples:
    """16 seeds per prompt; a subject rate near `rate`, backgrounds always right."""
    subject = (np.random.default_rng(seed).random(32) < rate).astype(float).tolist()
    units = [("prompt", p, s) for p in PROMPTS for s in range(16)]
    table = {
        "kind": [u[0] for u in units],
        "prompt": [u[1] for u in units],
        "seed": [u[2] for u in units],
        "scores": {"subject_rate": subject, "prompt_fidelity": [1.0] * 32},
    }
    return CellSamples.from_saved(table, "balanced", 0.5)


def run(name: str, lr: float, rates: dict[int, float], **settings) -> Run:
    cells = []
    for step, rate in rates.items():
        cell = samples(rate, seed=step + int(lr * 1e7))
        objective = float(cell.objective(list(cell.units)))
        cells.append(
            CellRow(name, Cell(step, Sampling("ddim", 20, 3.0), "raw"), objective, {}, {}, [],
                    [], None, cell)
        )  # fmt: skip
    config = {"optim": {"lr": lr}, "prior": {"enabled": settings.get("prior", True)}}
    return Run(name, Path(name), "complete", config, [], {"final_step": 400}, cells)


def sweep_folder(tmp_path: Path, params: dict[str, str]) -> Path:
    hydra = {
        "sweeper": {"params": params},
        "overrides": {"task": ["+sweep=toyworld_lr_steps", "eval.seeds=${range:16}"]},
        "runtime": {"config_sources": [{"provider": "main", "path": str(ROOT / "conf")}]},
    }
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra}))
    return tmp_path


def test_a_best_lr_at_the_upper_edge_and_a_rising_curve_ask_for_more_lr_and_steps(tmp_path):
    root = sweep_folder(tmp_path, {"optim.lr": "1e-5,3e-5", "train.max_steps": "100,200,400"})
    low = run("0", 1e-5, {100: 0.05, 200: 0.1, 400: 0.2})
    high = run("1", 3e-5, {100: 0.2, 200: 0.4, 400: 0.7})
    plan = propose(Sweep(root, "toyworld_lr_steps", [low, high], None))

    assert plan.params["optim.lr"] == "3e-05,9e-05,0.00027"
    assert plan.params["train.max_steps"] == "400,800,1600"
    assert [change.split(":")[0] for change, _ in plan.proposals] == [
        "optim.lr",
        "train.max_steps",
    ]
    assert "upper edge" in plan.proposals[0][1] and "still rising" in plan.proposals[1][1]

    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)  # conf/sweep is a link to sweeps/: copied as files
    (conf / "sweep" / "next-lr.yaml").write_text(preset_text(plan, "next-lr", root))
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose("train", ["+sweep=next-lr"], return_hydra_config=True)
    assert cfg.sweep_name == "next-lr"
    assert cfg.hydra.sweeper.params["optim.lr"] == "3e-05,9e-05,0.00027"
    assert cfg.eval.seeds == list(range(16))  # the command line of the first sweep is kept
    assert cfg.prior.enabled is False  # and the preset it ran


def test_a_setting_that_lost_clearly_everywhere_is_fixed_at_its_winner(tmp_path):
    root = sweep_folder(tmp_path, {"optim.lr": "1e-5,3e-5", "prior.enabled": "true,false"})
    runs = [
        run("0", 1e-5, {200: 0.9, 400: 0.5}, prior=True),
        run("1", 1e-5, {200: 0.2, 400: 0.1}, prior=False),
        run("2", 3e-5, {200: 0.8, 400: 0.4}, prior=True),
        run("3", 3e-5, {200: 0.15, 400: 0.1}, prior=False),
    ]
    plan = propose(Sweep(root, "s", runs, None))

    assert "prior.enabled" not in plan.params and plan.fixed["prior.enabled"] == "true"
    assert plan.params["optim.lr"] == "1.11e-06,3.33e-06,1e-05"  # the best LR: the lower edge
    assert "train.max_steps" not in plan.params  # the curve turned: no more steps


def test_top_cells_the_data_cannot_separate_ask_for_more_seeds(tmp_path):
    root = sweep_folder(tmp_path, {"optim.lr": "1e-5,3e-5,1e-4"})
    runs = [run(str(i), lr, {200: 0.6, 400: 0.5}) for i, lr in enumerate([1e-5, 3e-5, 1e-4])]
    plan = propose(Sweep(root, "s", runs, None))

    seeds = plan.fixed["eval.seeds"]
    assert seeds.startswith("${range:") and int(seeds[8:-1]) > 16
    assert any("within noise" in evidence for _, evidence in plan.proposals)


def test_each_value_is_judged_by_its_best_run_not_its_first(tmp_path):
    """prior.enabled=true's first run is its weaker one: the value still wins, on its best."""
    from dreamsweep.report.findings import setting_effects

    root = sweep_folder(tmp_path, {"optim.lr": "1e-5,3e-5", "prior.enabled": "true,false"})
    runs = [
        run("0", 1e-5, {200: 0.3, 400: 0.25}, prior=True),
        run("1", 1e-5, {200: 0.2, 400: 0.1}, prior=False),
        run("2", 3e-5, {200: 0.9, 400: 0.8}, prior=True),
        run("3", 3e-5, {200: 0.15, 400: 0.1}, prior=False),
    ]
    effects = [e for e in setting_effects(Sweep(root, "s", runs, None)) if e.key == "prior.enabled"]
    assert [(e.value, e.verdict) for e in effects] == [("true", "best"), ("false", "worse")]
    assert effects[0].row.run == "2"
