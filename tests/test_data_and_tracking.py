"""Prompts from captions, bad photo folders reported before training, and where W&B writes."""

from __future__ import annotations

import shutil

import pytest

from dreamsweep.data.dataset import class_prompt, instance_examples
from dreamsweep.data.toy import TOY_SUBJECT_DIR
from tests.helpers import FAST, compose_config, train_cli


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "dog"
    folder.mkdir()
    for image in sorted(TOY_SUBJECT_DIR.glob("*.png"))[:3]:
        shutil.copy(image, folder / image.name)
    return folder


def test_prompts_come_from_the_template_or_a_sidecar_caption(photos):
    (photos / "toy_01.txt").write_text("{token} {class} on a beach at sunset\n")
    cfg = compose_config(
        "model=tiny", "data=folder", f"data.instance_dir={photos}", "data.class_name=dog"
    )
    prompts = [e.prompt for e in instance_examples(cfg)]
    assert prompts == ["a photo of sks dog", "sks dog on a beach at sunset", "a photo of sks dog"]
    assert class_prompt(cfg) == "a photo of dog"


def test_bad_photos_are_all_listed_before_any_model_loads(photos, tmp_path):
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    run_dir = tmp_path / "run"
    proc = train_cli(run_dir, "data=folder", f"data.instance_dir={photos}", "data.class_name=dog")
    assert proc.returncode == 1
    assert "empty.jpg" in proc.stderr and "broken.png" in proc.stderr
    assert "data.skip_bad=true" in proc.stderr
    assert not (run_dir / "config.yaml").exists()


def test_an_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "nothing").mkdir()
    nothing = tmp_path / "nothing"
    proc = train_cli(
        tmp_path / "run", "data=folder", f"data.instance_dir={nothing}", "data.class_name=dog"
    )
    assert proc.returncode == 1 and "no images in" in proc.stderr


@pytest.mark.slow
def test_wandb_mode_from_the_environment_wins(tmp_path):
    run_dir = tmp_path / "run"
    proc = train_cli(
        run_dir, *FAST, "tracker=wandb", "train.max_steps=2", env={"WANDB_MODE": "disabled"}
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not list(run_dir.glob("wandb/offline-run-*"))
    assert (run_dir / "metrics.jsonl").exists()  # the run folder always gets the numbers


def wandb_records(run_dir):
    """The records of a run's offline W&B log, read with W&B's own inspector."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    wandb_cli = Path(sys.executable).with_name("wandb")
    command = [str(wandb_cli), "leet", "inspect", "--json", str(run_dir / "wandb")]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_wandb_runs_compare_across_a_sweep(tmp_path):
    """Named by their settings, grouped by sweep and start, one objective series, curves that
    start at the base model, the console and the best weights (a model artifact)."""
    run_dir = tmp_path / "2026-12-03_08-00-00" / "0"  # a sweep folder's first run
    proc = train_cli(
        run_dir, *FAST, "tracker=wandb", "train.max_steps=4", "eval.every_n_steps=2",
        "sweep_name=demo", "run_name='lr=1e-3 prior=on'", env={"WANDB_MODE": "offline"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = wandb_records(run_dir)
    run = next(r["run"] for r in records if r["type"] == "run")
    assert run["display_name"] == "lr=1e-3 prior=on"
    assert run["run_group"] == "demo-2026-12-03_08-00-00"
    history = [r["history"]["item"] for r in records if r["type"] == "history"]
    evals = [h for h in history if "eval/objective" in h]
    assert [h.get("train/step") for h in evals] == [0, 2, 4], evals
    base = evals[0]  # the base model's cell, on the same key as the EMA cells after it
    assert "eval/pndm-n2-g7.5-ema/dino" in base and "eval/pndm-n2-g7.5-raw/dino" in base
    console = " ".join(
        r["output_raw"].get("line", "") for r in records if r["type"] == "output_raw"
    )
    assert "[dreamsweep] step 2" in console
    artifacts = [r["artifact"] for r in records if r["type"] == "artifact"]
    model = next(a for a in artifacts if a["type"] == "model")
    refs = [c.get("ref", "") for c in model["manifest"]["contents"]]
    assert any(ref.endswith("/best/cell.json") for ref in refs)
