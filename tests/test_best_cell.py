"""The report's logic on hand-made runs: best cell, noise, command, links, odd folders."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from dreamsweep.cells import Cell, Sampling
from dreamsweep.report.best import best_card, reproduce_command, shell_quote
from dreamsweep.report.collect import CellRow, Run, Sweep
from dreamsweep.report.plots import pareto_front
from dreamsweep.verdicts import CellSamples


def cell(
    run: str,
    step: int,
    dino: list[float],
    clip_t: list[float],
    spread: tuple[float, ...] = (-0.02, 0.01, 0.02, -0.01),
) -> CellRow:
    """A cell whose samples (one prompt per value, 4 seeds spread around it) score these
    means; ``spread`` is how the seeds differ (the same in cells that differ systematically)."""
    units = [("prompt", f"prompt {p}", s) for p in range(len(dino)) for s in range(4)]
    per_sample = {
        "dino": [d + e for d in dino for e in spread],
        "clip_t": [c for c in clip_t for _ in spread],
    }
    table = {
        "kind": [u[0] for u in units],
        "prompt": [u[1] for u in units],
        "seed": [u[2] for u in units],
        "scores": per_sample,
    }
    samples = CellSamples.from_saved(table, "balanced", 0.5)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    return CellRow(
        run=run,
        spec=Cell(step, Sampling("ddim", 50, 7.5), "ema"),
        objective=float(samples.objective(list(units))),
        scores={"dino": mean(dino), "clip_t": mean(clip_t)},
        per_prompt={"dino": dino, "clip_t": clip_t},
        prompts=[],
        seeds=[],
        folder=None,
        samples=samples,
    )


def run(name: str, cells: list[CellRow], state: str = "complete", **settings) -> Run:
    config = {
        "optim": {"lr_scheduler": settings.get("schedule", "constant"), "lr": 1e-6},
        "metrics": {"objective": "balanced", "drift_penalty": 0.5},
        "train": {"max_steps": 800},
    }
    return Run(
        name,
        Path(f"/runs/{name}"),
        state,
        config,
        ["+sweep=lr_steps", "optim.lr=1e-6", "optuna.trial_number=3"],
        {"state": state, "final_step": 800},
        cells,
    )


def test_a_gap_whose_paired_interval_holds_zero_is_within_noise():
    best = cell("a", 400, dino=[0.80, 0.70, 0.90, 0.60], clip_t=[0.30] * 4)
    close = cell(  # a small gap, and the seeds disagree on it
        "b",
        400,
        dino=[0.80, 0.71, 0.88, 0.60],
        clip_t=[0.30] * 4,
        spread=(0.02, -0.02, -0.01, 0.01),
    )
    clearly_worse = cell("c", 400, dino=[0.70, 0.60, 0.80, 0.50], clip_t=[0.30] * 4)
    sweep = Sweep(
        Path("/s"),
        "s",
        [run("a", [best]), run("b", [close]), run("c", [clearly_worse])],
        study=None,
    )

    card = best_card(sweep)

    assert card.row is best
    verdicts = {c.row.run: c.verdict for c in card.contenders}
    assert verdicts == {"b": "within noise", "c": "worse"}  # c: 0.1 lower on every sample
    assert [c.row.run for c in card.inseparable] == ["b"]  # P(best) >= 5%
    assert card.p_best + sum(c.p_best for c in card.contenders) == pytest.approx(1.0)


def test_cells_of_failed_runs_and_the_base_model_are_never_the_best():
    base = cell("a", 0, dino=[0.99] * 2, clip_t=[0.99] * 2)
    failed = cell("b", 200, dino=[0.95] * 2, clip_t=[0.95] * 2)
    trained = cell("a", 400, dino=[0.7] * 2, clip_t=[0.3] * 2)
    sweep = Sweep(
        Path("/s"), "s", [run("a", [base, trained]), run("b", [failed], "failed")], study=None
    )
    assert best_card(sweep).row is trained


def test_the_command_stops_at_the_best_step_when_the_lr_schedule_allows_it():
    row = cell("a", 400, dino=[0.7], clip_t=[0.3])
    constant = reproduce_command(row, run("a", [row]))
    assert constant == (
        "python train.py +sweep=lr_steps optim.lr=1e-6 'eval.schedulers=[ddim]' "
        "'eval.num_inference_steps=[50]' 'eval.guidance_scale=[7.5]' 'eval.weights=[ema]' "
        "train.max_steps=400 'eval.at_steps=[]' eval.every_n_steps=null"
    )  # the Optuna trial link is gone: that trial is over
    cosine = reproduce_command(row, run("a", [row], schedule="cosine"))
    assert "train.max_steps" not in cosine  # a cosine schedule depends on the total steps


@pytest.mark.parametrize("arg", ["a=b", "x=[1,2]", "p=['a {t} & b','c']", "q=it's $HOME"])
def test_shell_quoting_survives_the_shell(arg):
    assert shlex.split(shell_quote(arg)) == [arg]


def test_the_pareto_front_keeps_the_points_nothing_beats_on_both():
    points = [(0.9, 0.20), (0.8, 0.30), (0.7, 0.25), (0.6, 0.31), (0.5, 0.10)]
    assert pareto_front(points) == [(0.6, 0.31), (0.8, 0.30), (0.9, 0.20)]


def test_an_online_run_is_linked_and_an_offline_one_gets_its_sync_command(tmp_path):
    from dreamsweep.report.export import page_context

    online, offline = run("a", []), run("b", [])
    online.result["wandb"] = {"train": {"url": "https://wandb.ai/me/dreamsweep/runs/abc"}}
    offline.path = tmp_path / "b"
    (offline.path / "wandb" / "offline-run-20261201_120000-abc").mkdir(parents=True)

    rows = page_context(Sweep(tmp_path, "s", [online, offline], None), None, [], [])["runs"]

    assert rows[0]["wandb_url"] == "https://wandb.ai/me/dreamsweep/runs/abc"
    assert rows[1]["wandb_url"] is None
    assert (
        rows[1]["wandb_sync"] == f"wandb sync {offline.path}/wandb/offline-run-20261201_120000-abc"
    )


def test_a_job_that_died_before_its_run_started_is_reported_not_dropped(tmp_path):
    from dreamsweep.report.export import export_report

    job = tmp_path / "sweep" / "0"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text("- optim.lr=1e-3\n")

    report = export_report(tmp_path / "sweep", tmp_path / "report")

    page = (report / "index.html").read_text()
    assert "no result.json (the job was stopped before its run started)" in page
    assert "there is no best cell" in page and 'class="state state-unknown"' in page
