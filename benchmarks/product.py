"""Every call the benchmarks make into DreamSweep's internals, in one place.

The rest of benchmarks/ measures through `train.py` subprocesses and their output files; only
the step and sampling comparisons need the product in-process. When an internal API changes
(training/setup.py, training/loop.py, evaluation/sampling.py are still moving), this is the
one file to adapt. Everything here mirrors what `dreamsweep.worker.run` does before its first step.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def compose(overrides: list[str]) -> Any:
    """The validated RunConfig that `python train.py <overrides>` would run."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dreamsweep.config import load_config

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        raw = hydra_compose("train", overrides=overrides)
    return load_config(raw)


def tiny_components(resolution: int) -> Any:
    """The embedded tiny model (SDComponents), as `model=tiny` builds it."""
    from dreamsweep.models.tiny import build_tiny

    return build_tiny(seed=0, sample_size=resolution)


def load_model(cfg: Any) -> Any:
    """The run's base model (SDComponents), loaded as the worker loads it."""
    from dreamsweep.models.loading import load_components

    return load_components(cfg.model)


def save_tiny_pipeline(folder: Path, resolution: int) -> None:
    """The tiny model as a diffusers folder, so a plain script can `from_pretrained` it."""
    from dreamsweep.models.pipeline import assemble_pipeline

    assemble_pipeline(tiny_components(resolution)).save_pretrained(str(folder))


def save_pipeline(cfg: Any, folder: Path) -> None:
    """The run's base model as its family's diffusers folder (a built-in model's copy), so a
    plain pipeline can `from_pretrained` it."""
    from dreamsweep.models.pipeline import assemble_pipeline

    assemble_pipeline(load_model(cfg)).save_pretrained(str(folder))


def train_state(cfg: Any, device: str, unet: Any = None) -> Any:
    """A TrainState set up as the worker sets it up; `unet` replaces the model's UNet after the
    data is prepared, so class images and latents come from the tiny model at every size."""
    import torch
    from accelerate import Accelerator

    from dreamsweep.models.loading import fingerprint, load_components
    from dreamsweep.training.setup import build_state, configure_models, prepare_data

    torch.use_deterministic_algorithms(True, warn_only=True)  # as dreamsweep.worker.main
    accelerator = Accelerator(
        mixed_precision=cfg.launcher.mixed_precision,
        cpu=device == "cpu",
        gradient_accumulation_steps=cfg.train.grad_accum,  # build_state checks they agree
    )
    components = load_components(cfg.model)
    data = prepare_data(
        cfg,
        components,
        accelerator,
        fingerprint(components),
        Path(cfg.cache_dir).expanduser(),
        lambda message: None,
    )
    if unet is not None:
        components = replace(components, unet=unet)
    configure_models(cfg, components, accelerator)
    return build_state(cfg, components, accelerator, data)


def train_step(state: Any, step: int) -> None:
    """One optimiser step of the product's training loop."""
    from dreamsweep.training.loop import train_step as product_step

    product_step(state, step)


def eval_jobs(cfg: Any) -> tuple[Any, list[Any]]:
    """The sampling spec and (prompt, seed) jobs of the run's first evaluation cell."""
    from dreamsweep.cells import samplings
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec

    return sample_spec(cfg, samplings(cfg)[0]), EvalSet.from_config(cfg).jobs


def generate(components: Any, spec: Any, jobs: list[Any], device: str) -> list[Any]:
    """Evaluation sampling as the Evaluator calls it: one image per job, batched."""
    from dreamsweep.evaluation.sampling import generate as product_generate

    return product_generate(components, spec, jobs, device)


def job_seed(job: Any) -> int:
    """The seed the product gives a (prompt, seed) job, so a plain call draws the same noise."""
    from dreamsweep.evaluation.sampling import job_seed as product_job_seed

    return product_job_seed(job)


def sampler_class_name(name: str) -> tuple[str, dict[str, Any]]:
    """The diffusers scheduler class (and extra config) behind an `eval.schedulers` name."""
    from dreamsweep.evaluation.schedulers import SCHEDULERS

    return SCHEDULERS[name]
