"""The cell model: a sweep scores exactly the cells it plans, and a folded grid measures what the
naive grid would have measured, bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dreamsweep.cells import Cell, Sampling, planned_cells, reproduce_overrides
from dreamsweep.config import load_config
from dreamsweep.runs import RunPaths, read_metrics
from dreamsweep.toyworld import XL_BASE_DIR
from tests.helpers import FAST, ROOT, compose_config, multirun, train_cli


def names(cells) -> set[str]:
    return {f"step_{c.step:06d}/{c.name}" for c in cells}


def scored(run_dir: Path) -> set[str]:
    """The cells a run folder holds scores for (metrics.jsonl), as plan.json names them."""
    records = [r for r in read_metrics(RunPaths(run_dir)) if r.get("kind") == "eval"]
    return names(Cell.from_record(r) for r in records)


def test_a_run_plans_step_zero_every_eval_step_and_the_final_one():
    cfg = compose_config(
        "train.max_steps=10", "eval.every_n_steps=4", "eval.at_steps=[5,50]",
        "eval.schedulers=[ddim,pndm]", "eval.num_inference_steps=[4]",
    )  # fmt: skip
    cells = planned_cells(cfg)
    assert sorted({c.step for c in cells}) == [0, 4, 5, 8, 10]  # 50 is never reached
    base = [c for c in cells if c.step == 0]
    assert {c.weights for c in base} == {"base"} and len(base) == 2  # one per scheduler
    assert len(cells) == 2 + 4 * 2 * 2  # 4 trained steps x 2 schedulers x EMA/raw


def test_raw_weights_only_when_ema_is_off():
    cfg = compose_config("ema=off", "eval.weights=[ema,raw]")
    assert {c.weights for c in planned_cells(cfg) if c.step} == {"raw"}


def test_a_cell_is_read_back_from_its_record_and_reproduced():
    cell = Cell(8, Sampling("ddim", 25, 7.5), "ema")
    assert Cell.from_record(json.loads(json.dumps(cell.fields()))) == cell
    assert cell.name == "ddim-n25-g7.5-ema"
    assert reproduce_overrides(cell, "constant", final_step=12)["train.max_steps"] == "8"
    assert "train.max_steps" not in reproduce_overrides(cell, "cosine", final_step=12)


SMALL = (
    "train.checkpoint_every=2",
    "prior.num_images=2",
    "prior.sample_steps=2",
    "eval.num_prompts=2",
    "eval.seeds=[0]",
    "eval.num_inference_steps=[2]",
    "tracker=disk",
)


@pytest.mark.slow
def test_a_folded_grid_measures_what_the_naive_grid_measures(tmp_path):
    """Steps x scheduler with a constant LR: 1 run folded, 4 naive; every cell has the same
    scores and images, and the final weights are the same tensors. (A training axis such as
    optim.lr is not folded: each value is a run either way.)"""
    grid = ("optim.lr=1e-3", "train.max_steps=2,4", "eval.schedulers=ddim,pndm")
    cache = tmp_path / "cache"
    folded = multirun(tmp_path / "folded", *grid, "hydra/sweeper=grid", *SMALL, cache=cache)
    assert folded.returncode == 0, folded.stderr[-3000:]
    naive = multirun(
        tmp_path / "naive", *grid, "hydra/sweeper=grid", "hydra.sweeper.fold=false", *SMALL,
        cache=cache,
    )  # fmt: skip
    assert naive.returncode == 0, naive.stderr[-3000:]

    def cells_by_setting(sweep: Path) -> dict:
        out = {}
        for run in sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit()):
            cfg = load_config(_yaml(run / "config.yaml"), check_machine=False)
            for r in read_metrics(RunPaths(run)):
                if r.get("kind") == "eval" and r["step"] > 0:
                    scores = {k: v for k, v in r.items() if k.startswith("eval/")}
                    key = (cfg.optim.lr, r["step"], r["cell"])
                    out[key] = (scores, r["objective"], _pngs(run, r["step"], r["cell"]), run)
        return out

    a, b = cells_by_setting(tmp_path / "folded"), cells_by_setting(tmp_path / "naive")
    assert len({v[3] for v in a.values()}) == 1 and len({v[3] for v in b.values()}) == 4
    assert a.keys() == b.keys() and len(a) == 2 * 2 * 2  # step x scheduler x weights
    for key in a:
        assert a[key][:3] == b[key][:3], key  # scores, objective and sample bytes
    for lr in (1e-3,):
        final_a = next(v[3] for k, v in a.items() if k[:2] == (lr, 4))
        final_b = next(v[3] for k, v in b.items() if k[:2] == (lr, 4))
        wa, wb = _unet(final_a), _unet(final_b)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_the_plan_a_grid_prints_is_what_its_runs_score(tmp_path):
    """eval.every_n_steps and eval.at_steps (one of them past the end) on top of folded steps:
    the cells printed before training are the cells found in the run folders afterwards."""
    sweep = tmp_path / "sweep"
    proc = multirun(
        sweep, "+sweep=demo", *FAST, "train.max_steps=2,4", "prior.enabled=false", *SMALL,
        "eval.every_n_steps=3", "eval.at_steps=[1,50]", cache=tmp_path / "cache",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads((sweep / "plan.json").read_text())
    total = sum(len(j["cells"]) for j in plan["jobs"])
    assert f"{total} scored cell(s)" in proc.stdout + proc.stderr
    for job in plan["jobs"]:
        assert set(job["cells"]) == scored(sweep / str(job["job"])), job["overrides"]


@pytest.mark.slow
def test_resume_with_an_empty_cache_scores_against_the_base_model(tmp_path):
    """A run killed after its step-3 checkpoint and resumed on an empty cache: its baselines
    (the base model's class samples behind prior_drift) come from the base weights, so its
    scores equal those of the run that was never interrupted, and so does the cache entry."""
    settings = (*FAST, "train.max_steps=6", "train.checkpoint_every=3", "eval.at_steps=[3]")
    first_cache, second_cache = tmp_path / "cache1", tmp_path / "cache2"
    run = tmp_path / "run"
    done = train_cli(run, *settings, env={"DREAMSWEEP_CACHE_DIR": str(first_cache)})
    assert done.returncode == 0, done.stderr[-3000:]
    uninterrupted = _eval_records(run)
    for path in ("model", "result.json"):  # as a run killed after the checkpoint leaves it
        _remove(run / path)

    resumed = train_cli(run, *settings, env={"DREAMSWEEP_CACHE_DIR": str(second_cache)})
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from the checkpoint at step 3" in resumed.stdout
    assert _eval_records(run) == uninterrupted
    assert load_config(_yaml(run / "config.yaml")).cache_dir == str(second_cache)
    assert _base_samples(second_cache) == _base_samples(first_cache)


def _eval_records(run: Path) -> dict:
    return {
        (r["step"], r["cell"]): {k: v for k, v in r.items() if k.startswith("eval/")}
        for r in read_metrics(RunPaths(run))
        if r.get("kind") == "eval"
    }


def _base_samples(cache: Path) -> dict[str, bytes]:
    files = sorted((cache / "base_samples").rglob("*.png"))
    assert files, f"no base samples in {cache}"
    return {f.relative_to(cache).as_posix(): f.read_bytes() for f in files}


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path) if path.is_dir() else path.unlink()


def _yaml(path: Path):
    from omegaconf import OmegaConf

    return OmegaConf.load(path)


def _pngs(run: Path, step: int, cell: str) -> dict[str, bytes]:
    folder = run / "eval" / f"step_{step:06d}" / cell
    return {p.name: p.read_bytes() for p in sorted(folder.glob("p*.png"))}


def _unet(run: Path) -> dict:
    return load_file(str(run / "model" / "unet" / "diffusion_pytorch_model.safetensors"))


XL_BASE = (f"model.path={XL_BASE_DIR}", "metrics.clip.model=tiny", "metrics.dino.model=tiny")
PRESET_CUTS = {  # each preset as written, on the tiny model with fewer steps and samples
    "demo": ("train.max_steps=2,4",),
    "demo_search": ("train.max_steps=4", "eval.every_n_steps=2", "hydra.sweeper.n_trials=2"),
    "lr_steps": ("train.max_steps=2,4",),
    "faces_prior": ("train.max_steps=4", "eval.at_steps=[2,4]", "train.batch_size=1"),
    "schedulers": (
        "train.max_steps=4", "eval.at_steps=[2,4]",
        "eval.num_inference_steps=1,2",
    ),
    "text_encoder": ("train.max_steps=4", "eval.at_steps=[2,4]"),
    "ema": ("train.max_steps=4", "eval.at_steps=[2,4]"),
    "search": ("train.max_steps=4", "eval.every_n_steps=2", "hydra.sweeper.n_trials=2"),
    "toyworld_lr_steps": ("train.max_steps=2,4", "optim.lr=1e-4,1e-3"),
    "toyworld_prior": ("train.max_steps=2,4", "optim.lr=1e-4"),
    "toyworld_text_encoder": ("train.max_steps=2,4",),
    "toyworld_ema": ("train.max_steps=4", "eval.at_steps=[2]"),
    "toyworld_schedulers": (
        "train.max_steps=4", "eval.at_steps=[2]", "eval.num_inference_steps=1,2",
    ),
    "methods": ("train.max_steps=4", "eval.every_n_steps=2", "hydra.sweeper.n_trials=2",
                "method.ti_steps=2"),
    "token": ("train.max_steps=4", "eval.at_steps=[2,4]"),
    "toyworld_methods": ("train.max_steps=2,4", "method.ti_steps=1"),
    "toyworld_token": ("train.max_steps=2,4",),
    # the SDXL presets on the toy world XL's base, as a user points model.path at an SDXL
    # (scored by the tiny random feature models: the real CLIP and DINO are downloads)
    "sdxl_lora": (*XL_BASE, "train.max_steps=4", "train.max_steps=4", "eval.every_n_steps=2",
                  "optim.lr=1e-4", "method.rank=4,8"),
    "sdxl_full_vs_lora": (*XL_BASE, "train.max_steps=4",
                          "eval.every_n_steps=2", "hydra.sweeper.n_trials=2"),
    "toyworld_xl_lora": ("train.max_steps=2", "eval.every_n_steps=1", "optim.lr=3e-3"),
}  # fmt: skip


EXHAUSTIVE_ONLY = {  # same machinery as the others
    "faces_prior", "lr_steps", "text_encoder", "toyworld_lr_steps", "toyworld_prior",
    "toyworld_text_encoder", "toyworld_schedulers", "token", "toyworld_token",
    "sdxl_full_vs_lora", "toyworld_xl_lora", "methods", "toyworld_methods", "ema", "schedulers",
    "demo_search", "toyworld_ema",
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    "preset",
    [
        pytest.param(p, marks=pytest.mark.exhaustive) if p in EXHAUSTIVE_ONLY else p
        for p in sorted(PRESET_CUTS)
    ],
)
def test_every_preset_scores_the_cells_it_plans(preset, tmp_path):
    assert {p.stem for p in (ROOT / "sweeps").glob("*.yaml")} == set(PRESET_CUTS)
    sweep = tmp_path / "sweep"
    cut = ("model.sample_size=32", "data.resolution=32", "train.checkpoint_every=100",
           "prior.num_images=1", "prior.sample_steps=1", "eval.num_prompts=1", "eval.seeds=[0]",
           "tracker=disk")  # fmt: skip
    if "schedulers" not in preset:
        cut += ("eval.num_inference_steps=[1]",)
    if "search" in preset or preset in (
        "methods",
        "sdxl_full_vs_lora",
    ):  # the Optuna presets: a study of their own
        cut += (f"hydra.sweeper.storage=sqlite:///{tmp_path / 'study.db'}",)
    proc = multirun(sweep, f"+sweep={preset}", *cut, *PRESET_CUTS[preset], cache=tmp_path / "c")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert runs
    if (sweep / "plan.json").exists():  # a grid: the plan printed before anything trained
        plan = {
            str(j["job"]): set(j["cells"])
            for j in json.loads((sweep / "plan.json").read_text())["jobs"]
        }
        assert plan == {run.name: scored(run) for run in runs}
    else:  # a search: each complete trial scores the cells its settings plan
        for run in runs:
            if json.loads((run / "result.json").read_text())["state"] == "complete":
                cfg = load_config(_yaml(run / "config.yaml"), check_machine=False)
                assert names(planned_cells(cfg)) == scored(run)
