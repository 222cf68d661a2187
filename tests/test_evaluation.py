"""Evaluation along a run: every cell scored and written, the curve, and re-scoring later."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dreamsweep.runs import RunPaths, read_metrics
from tests.helpers import ROOT, train_cli

pytestmark = pytest.mark.slow

EVAL = (
    "+debug=fast",  # the tiny model and its random feature models, whatever the default model
    "train.max_steps=6",
    "train.checkpoint_every=3",
    "prior.num_images=2",
    "prior.sample_steps=2",
    "optim.lr=1e-3",
    "eval.num_inference_steps=[3]",
    "eval.num_prompts=2",
    "eval.seeds=[0,1]",
)


def eval_records(run_dir):
    return [r for r in read_metrics(RunPaths(run_dir)) if r.get("kind") == "eval"]


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "evaluated"
    proc = train_cli(
        run_dir, *EVAL, "eval.at_steps=[2,4]", "eval.schedulers=[ddim,pndm]", "tracker=wandb"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_every_step_scheduler_and_weights_is_a_scored_cell(evaluated_run):
    records = eval_records(evaluated_run)
    baseline = [r for r in records if r["step"] == 0]
    trained = [r for r in records if r["step"] > 0]
    assert sorted(r["cell"] for r in baseline) == ["ddim-n3-g7.5-base", "pndm-n3-g7.5-base"]
    assert len(trained) == 12  # steps 2, 4, 6 x ddim, pndm x ema, raw
    assert {(r["step"], r["scheduler"], r["weights"]) for r in trained} == {
        (s, sched, w) for s in (2, 4, 6) for sched in ("ddim", "pndm") for w in ("ema", "raw")
    }
    for r in records:
        for key in (
            "eval/clip_i",
            "eval/clip_t",
            "eval/dino",
            "eval/diversity",
            "eval/prior_drift",
            "eval/pres",
            "eval/memorization",
            "objective",
        ):
            assert isinstance(r[key], float), (r["cell"], key)
    assert all(r["eval/prior_drift"] == pytest.approx(0.0, abs=1e-6) for r in baseline)
    assert any(r["eval/prior_drift"] > 1e-4 for r in trained)  # lr 1e-3 moves the class prior


def test_each_cell_folder_holds_samples_a_grid_and_its_scores(evaluated_run):
    cell = evaluated_run / "eval" / "step_000004" / "ddim-n3-g7.5-ema"
    scores = json.loads((cell / "scores.json").read_text())
    assert len(scores["files"]) == 4 and all((cell / f).exists() for f in scores["files"])
    assert scores["metric_models"]["clip"]["model"] == "tiny"
    assert scores["metric_models"]["dino"]["preprocessing"]["image_size"] == 32
    assert len(scores["per_prompt"]["dino"]) == 2
    with Image.open(cell / "grid.png") as grid:
        assert grid.size == (2 * 64, 3 * 64)  # seeds across; 2 prompts + the class prompt down
    assert not list(evaluated_run.glob("eval/*/*.tmp"))


def test_result_names_the_best_cell(evaluated_run):
    result = json.loads((evaluated_run / "result.json").read_text())
    trained = [r for r in eval_records(evaluated_run) if r["step"] > 0]
    assert result["objective"] == max(r["objective"] for r in trained)
    assert result["best"]["objective"] == result["objective"] and result["best"]["step"] > 0


def test_result_json_points_at_the_offline_wandb_run(evaluated_run):
    link = json.loads((evaluated_run / "result.json").read_text())["wandb"]["train"]
    assert link["mode"] == "offline" and link["url"] is None  # online runs record their URL
    offline = Path(link["dir"])
    assert offline.parent == evaluated_run / "wandb" and offline.name.startswith("offline-run-")


def _weights_on_disk(run: Path, folders=("checkpoints", "model")) -> dict[str, int]:
    """Every checkpoint and weights file of a run, with its modification time."""
    folders = [run / f for f in folders]
    return {
        str(f.relative_to(run)): f.stat().st_mtime_ns
        for folder in folders
        if folder.exists()
        for f in folder.rglob("*")
        if f.is_file()
    }


def rescore(run_dir: Path, log_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"run={run_dir}",
            "eval.schedulers=[euler]",
            "eval.num_inference_steps=[2]",
            "eval.num_prompts=2",
            "tracker=disk",
            f"hydra.run.dir={log_dir}",
            *overrides,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_evaluate_rescores_a_finished_run_without_training(evaluated_run, tmp_path):
    before = len(eval_records(evaluated_run))
    weights = _weights_on_disk(evaluated_run)
    proc = rescore(evaluated_run, tmp_path / "log")
    assert proc.returncode == 0, proc.stderr[-3000:]
    new = eval_records(evaluated_run)[before:]
    assert sorted(r["cell"] for r in new) == ["euler-n2-g7.5-ema", "euler-n2-g7.5-raw"]
    assert all(r["step"] == 6 for r in new)
    assert weights and _weights_on_disk(evaluated_run) == weights  # nothing trained


def test_rescoring_keeps_best_weights_result_and_report_on_the_same_cell(tmp_path):
    """The cells scored during training are made worse by hand, so a re-scored cell must win:
    best/ then holds its weights, and result.json, the report and export all name it."""
    from dreamsweep.best_weights import kept_cell
    from dreamsweep.export.choose import choose

    run_dir = tmp_path / "run"
    assert train_cli(run_dir, *EVAL, "eval.schedulers=[ddim]").returncode == 0
    metrics = RunPaths(run_dir).root / "metrics.jsonl"
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    for line in lines:
        if line.get("kind") == "eval" and line["objective"] is not None:
            line["objective"] -= 10.0
    metrics.write_text("".join(json.dumps(line) + "\n" for line in lines))

    proc = rescore(run_dir, tmp_path / "log")

    assert proc.returncode == 0, proc.stderr[-3000:]
    best = json.loads((run_dir / "result.json").read_text())["best"]
    assert best["cell"].startswith("euler-n2-g7.5-") and best["step"] == 6
    kept = kept_cell(run_dir)
    assert (kept["step"], kept["cell"]) == (best["step"], best["cell"])
    chosen = choose(run_dir)
    assert (chosen.row.step, chosen.row.cell) == (best["step"], best["cell"])


def test_evaluate_refuses_a_folder_that_is_not_a_finished_run(tmp_path):
    proc = subprocess.run(
        [sys.executable, "evaluate.py", f"run={tmp_path}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "not a finished run folder" in proc.stderr


def test_a_missing_metric_model_fails_before_training(tmp_path):
    run_dir = tmp_path / "run"
    proc = train_cli(run_dir, *EVAL, "metrics.clip.model=/models/no-such-clip")
    assert proc.returncode == 1 and "metrics.clip.model" in proc.stderr
    assert not (run_dir / "checkpoints").exists()


def test_two_processes_give_the_same_scores(tmp_path):
    settings = (*EVAL, "train.max_steps=2", "tracker=disk", "eval.schedulers=[ddim]")
    one, two = tmp_path / "one", tmp_path / "two"
    assert train_cli(one, *settings).returncode == 0
    proc = train_cli(two, *settings, "launcher=multigpu", "launcher.num_processes=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    base_one, base_two = eval_records(one)[0], eval_records(two)[0]
    assert base_one["cell"] == base_two["cell"] == "ddim-n3-g7.5-base"
    for key in ("eval/clip_i", "eval/clip_t", "eval/dino", "eval/diversity"):
        assert base_two[key] == pytest.approx(base_one[key], abs=1e-4)


def test_adaptive_evaluation_scores_each_cell_on_the_seeds_it_got(tmp_path):
    run_dir = tmp_path / "adaptive"
    proc = train_cli(
        run_dir, *EVAL, "eval.seeds=[0,1,2,3]", "eval.adaptive=true", "eval.adaptive_block=2"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for record in eval_records(run_dir):
        seeds = record["seeds_per_prompt"]
        assert seeds == 4 if record["step"] == 0 else seeds in (2, 4)  # blocks of 2, up to 4
        folder = run_dir / "eval" / f"step_{record['step']:06d}" / record["cell"]
        table = json.loads((folder / "scores.json").read_text())["samples"]
        assert table["seed"][-seeds:] == list(range(seeds))  # the class samples' seeds
        assert len(table["kind"]) == seeds * (2 + 1)  # 2 prompts and the class prompt
        assert len(list(folder.glob("*.png"))) == seeds * 3 + 1  # + grid.png
