"""End-to-end runs of `python train.py` on the tiny model, as a user starts them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from diffusers import StableDiffusionPipeline
from safetensors.torch import load_file

from dreamsweep.models.saving import read_settings
from dreamsweep.runs import RunPaths, read_metrics
from tests.helpers import FAST, ROOT, train_cli

pytestmark = pytest.mark.slow


def train_losses(run_dir):
    return [r["train/loss"] for r in read_metrics(RunPaths(run_dir)) if "train/loss" in r]


def unet_weights(run_dir, sub="unet"):
    return load_file(str(run_dir / "model" / sub / "diffusion_pytorch_model.safetensors"))


def kill_at_checkpoint(run_dir, settings, step: int, env: dict | None = None) -> None:
    """Start `train.py` and kill -9 its process group once the checkpoint of ``step`` is there."""
    cmd = [sys.executable, "train.py", f"hydra.run.dir={run_dir}", *settings]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, start_new_session=True, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})},
    )  # fmt: skip
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / f"step_{step:06d}").exists():
        assert proc.poll() is None and time.time() < deadline, "run ended before the kill"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "model").exists()


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The demo's settings (prior, text encoder, EMA, W&B offline), just fewer steps."""
    run_dir = tmp_path_factory.mktemp("runs") / "default"
    proc = train_cli(run_dir, *FAST, "tracker=wandb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_run_folder_is_complete(default_run):
    paths = RunPaths(default_run)
    result = json.loads(paths.result.read_text())
    assert result["state"] == "complete" and result["final_step"] == 6
    assert result["objective"] == result["best"]["objective"]  # the best evaluated cell
    assert paths.config.exists()
    assert [p.name for p in paths.checkpoints.iterdir()] == ["step_000003"]
    assert (paths.model / "unet_raw").is_dir()  # EMA on: raw weights kept beside EMA ones
    assert list((default_run / "wandb").glob("offline-run-*"))


def test_the_validation_loss_is_logged_at_every_evaluation(default_run):
    """kind=val lines: the base model at step 0, then each scored weights at the final step."""
    val = [r for r in read_metrics(RunPaths(default_run)) if r.get("kind") == "val"]
    assert [(r["step"], r["weights"]) for r in val] == [(0, "base"), (6, "ema"), (6, "raw")]
    keys = {"val/instance_loss", "val/class_loss", "val/class_train_loss"}  # held out, prior's
    assert all(keys <= r.keys() for r in val)


def test_instance_and_prior_losses_are_logged_with_their_sum(default_run):
    records = [r for r in read_metrics(RunPaths(default_run)) if "train/loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(r["kind"] == "train" for r in records)
    for r in records:
        assert r["train/loss"] == pytest.approx(r["train/instance_loss"] + r["train/prior_loss"])


def test_final_weights_load_with_diffusers_and_sample(default_run):
    pipe = StableDiffusionPipeline.from_pretrained(default_run / "model", local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        "a photo of sks toy",
        num_inference_steps=2,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
    ).images[0]
    assert image.size == (64, 64)
    settings = read_settings(default_run / "model" / "unet" / "diffusion_pytorch_model.safetensors")
    assert settings["train"]["max_steps"] == 6 and settings["prior"]["enabled"]


def test_ema_and_raw_weights_differ(default_run):
    ema, raw = unet_weights(default_run), unet_weights(default_run, "unet_raw")
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)


def test_same_seed_gives_same_losses(default_run, tmp_path):
    again = tmp_path / "again"
    proc = train_cli(again, *FAST, "tracker=wandb")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"[dreamsweep] run {again}: 1 process(es) on cpu" in proc.stdout  # where, how
    assert f"; next: dreamsweep report {again}" in proc.stdout  # how it ended, what next
    assert "torchvision" not in proc.stdout + proc.stderr  # library noise filtered
    assert train_losses(again) == train_losses(default_run)
    other_seed = tmp_path / "other"
    assert train_cli(other_seed, *FAST, "train.seed=7").returncode == 0
    assert train_losses(other_seed) != train_losses(default_run)


def test_resume_after_sigkill_gives_the_same_weights(tmp_path):
    settings = (
        "train.max_steps=30",
        "train.checkpoint_every=5",
        "prior.num_images=2",
        "prior.sample_steps=2",
        "tracker=disk",
        "ema=off",
        "eval.enabled=false",
    )
    reference = tmp_path / "reference"
    assert train_cli(reference, *settings).returncode == 0

    killed = tmp_path / "killed"
    kill_at_checkpoint(killed, settings, step=10)
    resumed = train_cli(killed, *settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint at step" in resumed.stdout
    final, expected = unet_weights(killed), unet_weights(reference)
    assert all(torch.equal(final[k], expected[k]) for k in expected)
    steps = [r["step"] for r in read_metrics(RunPaths(killed)) if r["kind"] == "train"]
    assert steps == list(range(1, 31))  # records after the checkpoint were replaced, not doubled


def saved_tensors(run_dir) -> dict[str, torch.Tensor]:
    """Every tensor of the run's final and best weights, by file and key."""
    return {
        f"{file.relative_to(run_dir)}:{key}": tensor
        for folder in ("model", "best")
        for file in sorted((run_dir / folder).rglob("*.safetensors"))
        for key, tensor in load_file(str(file)).items()
    }


def cell_scores(run_dir) -> list[dict]:
    """The scored cells of metrics.jsonl without their timings."""
    return [
        {k: v for k, v in r.items() if k not in ("seconds", "time")}
        for r in read_metrics(RunPaths(run_dir))
        if r["kind"] == "eval"
    ]


KILLED_METHODS = {
    "dreambooth": [],
    **{
        t: ["method=lora", f"method.type={t}", "method.dropout=0.1"]
        for t in ("lora", "loha", "lokr")
    },
    "textual_inversion": ["method=textual_inversion", "method.num_vectors=2"],
    # SDXL (tiny_xl): the full model, a LoRA, and textual inversion on both encoders
    "dreambooth_xl": ["model=tiny_xl"],
    "lora_xl": ["model=tiny_xl", "method=lora", "method.dropout=0.1"],
    "textual_inversion_xl": ["model=tiny_xl", "method=textual_inversion"],
    # killed at step 4: in phase 1 (resumed across the boundary), and in phase 2
    "pivotal": ["method=pivotal", "method.ti_steps=6"],
    "pivotal_lora": [
        "method=pivotal",
        "method.ti_steps=2",
        "method.then=lora",
        "optim.lr=1e-3",
        "method.train_embeddings=true",
    ],  # fmt: skip
}


# The default suite kills one of each kind of state (a full model, LoRA adapters, embeddings
# then adapters across the phase boundary); -m exhaustive kills every method.
KILLED_BY_DEFAULT = ("dreambooth", "lora", "pivotal_lora")


@pytest.mark.parametrize(
    "method",
    [m if m in KILLED_BY_DEFAULT else pytest.param(m, marks=pytest.mark.exhaustive)
     for m in KILLED_METHODS],
)  # fmt: skip
def test_one_seed_gives_the_same_run_through_a_kill_and_rerun(method, tmp_path):
    """Two runs of one command (a fresh cache for the first, a warm one for the second, which
    is also killed and rerun) end bit-identical: adapter init, dropout, data order, noise,
    textual inversion's new rows (and their EMA)."""
    kind = KILLED_METHODS[method]
    settings = (*FAST, *kind, "train.max_steps=8", "train.checkpoint_every=4",
                "eval.every_n_steps=4")  # fmt: skip
    env = {"DREAMSWEEP_CACHE_DIR": str(tmp_path / "cache")}
    reference = tmp_path / "reference"
    done = train_cli(reference, *settings, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    again = tmp_path / "again"
    kill_at_checkpoint(again, settings, step=4, env=env)
    resumed = train_cli(again, *settings, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint at step 4" in resumed.stdout
    expected, final = saved_tensors(reference), saved_tensors(again)
    assert final.keys() == expected.keys() and len(expected) > 0
    assert [k for k in expected if not torch.equal(final[k], expected[k])] == []
    assert cell_scores(again) == cell_scores(reference)


def test_two_cpu_processes_train_in_sync(tmp_path):
    run_dir = tmp_path / "ddp"
    proc = train_cli(run_dir, *FAST, "launcher=multigpu", "launcher.num_processes=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["num_processes"] == 2 and result["weights_in_sync"] is True
    assert len(train_losses(run_dir)) == 6  # one writer: no duplicated lines


def test_diverging_run_fails_with_a_hint_on_every_process(tmp_path):
    run_dir = tmp_path / "nan"
    proc = train_cli(
        run_dir,
        *FAST,
        "train.noise=offset",
        "train.noise_offset=1e38",
        "launcher=multigpu",
        "launcher.num_processes=2",
        timeout=300,
    )
    assert proc.returncode == 1
    result = json.loads((run_dir / "result.json").read_text())
    assert result["state"] == "failed" and "at step 1" in result["error"]
    assert "lower learning rate" in proc.stderr and "Traceback" not in proc.stderr
    assert not (run_dir / "model").exists()


def test_a_completed_run_folder_is_not_trained_again(default_run):
    before = (default_run / "result.json").read_text()
    proc = train_cli(default_run, *FAST, "tracker=wandb")
    assert proc.returncode == 0 and (default_run / "result.json").read_text() == before


def test_a_run_folder_with_other_settings_is_refused(default_run):
    proc = train_cli(default_run, *FAST, "optim.lr=1e-4")
    assert proc.returncode == 1 and "other settings" in proc.stderr


def test_training_options_work_together(tmp_path):
    run_dir = tmp_path / "options"
    proc = train_cli(
        run_dir,
        *FAST,
        "train.gradient_checkpointing=true",
        "train.attention=eager",
        "train.snr_gamma=5.0",
        "train.noise=offset",
        "train.noise_offset=0.05",
        "train.grad_accum=2",
        "train.text_encoder_lr=1e-5",
        "optim.lr_scheduler=linear",
        "optim.warmup_steps=2",
        "launcher.mixed_precision=bf16",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lrs = [r["train/lr"] for r in read_metrics(RunPaths(run_dir)) if r["kind"] == "train"]
    assert lrs[0] < lrs[1] and lrs[-1] < lrs[1]  # linear warm-up, then linear decay


def test_frozen_text_encoder_without_prior_or_ema(tmp_path):
    from dreamsweep.models.loading import load_components
    from tests.helpers import compose_config

    run_dir = tmp_path / "frozen"
    settings = (*FAST, "train.text_encoder=false", "prior=off", "ema=off")
    proc = train_cli(run_dir, *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [r for r in read_metrics(RunPaths(run_dir)) if r["kind"] == "train"]
    assert "train/prior_loss" not in records[0]
    assert not (run_dir / "model" / "unet_raw").exists()
    base = load_components(compose_config(*settings).model)
    saved = load_file(str(run_dir / "model" / "text_encoder" / "model.safetensors"))
    saved = {k.removeprefix("text_model."): v for k, v in saved.items()}  # the portable layout
    frozen = {k.removeprefix("text_model."): w for k, w in base.text_encoder.named_parameters()}
    assert frozen.keys() <= saved.keys()
    assert all(torch.equal(saved[k], w.detach()) for k, w in frozen.items())  # not trained
    trained = unet_weights(run_dir)
    assert any(not torch.equal(trained[k], w.detach()) for k, w in base.unet.named_parameters())


def test_cpu_threads_are_the_run_s_share_of_the_cores():
    from omegaconf import OmegaConf

    from dreamsweep.launch import cpu_threads, runs_side_by_side, worker_env
    from tests.helpers import compose_config

    assert cpu_threads(1, 1, cores=8)[0] == 8
    assert cpu_threads(2, 2, cores=8)[0] == 2  # 2 runs x 2 processes
    assert cpu_threads(1, 4, cores=2)[0] == 1  # never 0, never more than the share
    assert cpu_threads(1, 1, cores=2, busy=1.1)[0] == 1  # another process keeps a core busy
    assert cpu_threads(1, 1, cores=8, busy=0.2)[0] == 8
    cfg = compose_config("launcher=local")
    assert worker_env(cfg, 2)["OMP_NUM_THREADS"] == "2"
    assert worker_env(cfg, 2)["OMP_WAIT_POLICY"] == "PASSIVE"  # no spinning on busy cores

    def hydra(mode: str, launcher: str, **n_jobs) -> OmegaConf:
        from hydra.types import RunMode

        return OmegaConf.create(
            {
                "mode": RunMode[mode],
                "launcher": {"_target_": launcher, **n_jobs.get("launcher", {})},
                "sweeper": n_jobs.get("sweeper", {}),
            }
        )

    local = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
    slurm = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    basic = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"
    assert runs_side_by_side(hydra("RUN", basic)) == 1
    assert runs_side_by_side(hydra("MULTIRUN", basic, sweeper={"n_jobs": 4})) == 1  # in turn
    assert runs_side_by_side(hydra("MULTIRUN", slurm, sweeper={"n_jobs": 4})) == 1  # own cores
    assert runs_side_by_side(hydra("MULTIRUN", local, sweeper={"n_jobs": 3})) == 3
    assert runs_side_by_side(hydra("MULTIRUN", local), cores=6) == 6  # all at once: 1 thread


def test_the_best_cell_s_weights_are_kept_and_sample_what_was_scored(tmp_path):
    """<run>/best/ holds the best cell's weights (EMA or raw, its scheduler): loaded as a user
    would, they draw the very images that cell was scored on."""
    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.evaluation.sampling import generate
    from dreamsweep.metrics.objective import best_cell
    from dreamsweep.models.loading import load_components, saved_model
    from tests.helpers import compose_config

    run = tmp_path / "run"
    settings = (*FAST, "eval.every_n_steps=2", "eval.schedulers=[ddim,pndm]")
    assert train_cli(run, *settings).returncode == 0
    cells = [r for r in read_metrics(RunPaths(run)) if r.get("kind") == "eval"]
    best = best_cell(cells)
    kept = json.loads((run / "best" / "cell.json").read_text())
    assert (kept["step"], kept["cell"]) == (best["step"], best["cell"])
    assert json.loads((run / "result.json").read_text())["best"]["cell"] == best["cell"]
    scheduler = json.loads((run / "best" / "scheduler" / "scheduler_config.json").read_text())
    assert (
        scheduler["_class_name"]
        == {"ddim": "DDIMScheduler", "pndm": "PNDMScheduler"}[best["scheduler"]]
    )

    cfg = compose_config(*settings)
    eval_set, cell = EvalSet.from_config(cfg), Cell.from_record(best)
    components = load_components(saved_model(run / "best"))
    images = generate(components, sample_spec(cfg, cell.sampling), eval_set.jobs)  # same batches
    scored = run / "eval" / f"step_{best['step']:06d}" / best["cell"] / "p00_s0.png"
    from PIL import Image

    assert list(images[0].getdata()) == list(Image.open(scored).convert("RGB").getdata())
