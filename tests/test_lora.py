"""method=lora: adapters on a frozen base, saved the way diffusers loads them, scored as saved."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.helpers import FAST, multirun, train_cli

pytestmark = pytest.mark.slow
LORA = (*FAST, "method=lora", "method.alpha=8", "eval.every_n_steps=2")  # alpha != rank 4


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lora") / "run"
    proc = train_cli(run, *LORA)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def test_a_lora_run_saves_only_the_adapters_with_its_alpha(lora_run):
    lora = lora_run / "model" / "pytorch_lora_weights.safetensors"
    base = lora_run / "base_model" / "unet" / "diffusion_pytorch_model.safetensors"
    assert lora.stat().st_size * 20 < base.stat().st_size  # adapters, not the model
    from safetensors import safe_open

    with safe_open(str(lora), framework="pt") as f:
        meta = f.metadata()
    adapters = json.loads(meta["lora_adapter_metadata"])  # diffusers reloads at this alpha
    assert adapters["unet.lora_alpha"] == 8 and adapters["unet.r"] == 4
    assert json.loads(meta["dreamsweep_config"])["method"]["name"] == "lora"


def test_the_kept_lora_loads_on_its_base_and_draws_what_was_scored(lora_run):
    """from_pretrained(base) + load_lora_weights(<run>/best), as a user does, offline."""
    from diffusers import StableDiffusionPipeline

    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.evaluation.sampling import generate
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import lora_base
    from tests.helpers import compose_config

    best = json.loads((lora_run / "best" / "cell.json").read_text())
    pipe = StableDiffusionPipeline.from_pretrained(lora_base(lora_run / "best"))
    pipe.load_lora_weights(str(lora_run / "best"))
    cfg = compose_config(*LORA)
    components = load_components(saved_model(lora_base(lora_run / "best")))
    base_image = generate(components, sample_spec(cfg, Cell.from_record(best).sampling),
                          EvalSet.from_config(cfg).jobs)[0]  # fmt: skip
    components.unet, components.text_encoder = pipe.unet, pipe.text_encoder
    images = generate(components, sample_spec(cfg, Cell.from_record(best).sampling),
                      EvalSet.from_config(cfg).jobs)  # fmt: skip
    scored = lora_run / "eval" / f"step_{best['step']:06d}" / best["cell"] / "p00_s0.png"
    assert list(images[0].getdata()) == list(Image.open(scored).convert("RGB").getdata())
    assert list(images[0].getdata()) != list(base_image.getdata())  # the LoRA changes it


def test_method_is_a_training_axis_of_a_grid(tmp_path):
    sweep = tmp_path / "sweep"
    proc = multirun(sweep, "hydra/sweeper=grid", "method=dreambooth,lora", *FAST,
                    "eval.num_prompts=1", cache=tmp_path / "cache")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = {p.name: json.loads((p / "result.json").read_text()) for p in sweep.iterdir()
               if (p / "result.json").exists()}  # fmt: skip
    assert sorted(r["state"] for r in results.values()) == ["complete", "complete"]
    assert (sweep / "1" / "best" / "pytorch_lora_weights.safetensors").exists()
    assert (sweep / "0" / "best" / "model_index.json").exists()
    from dreamsweep.report.export import export_report

    report = export_report(sweep, tmp_path / "report")  # the two methods side by side
    summary = json.loads((report / "best.json").read_text())
    assert "method.name" in summary["sweep"]["varying"]
    assert "method.name=lora" in (report / "index.html").read_text().replace(" ", "")


def test_the_kohya_export_keeps_the_true_alpha_and_loads_with_equal_outputs(lora_run, tmp_path):
    """`dreamsweep export --format lora-kohya`: A1111/ComfyUI's layout; diffusers' loader
    reads it back to the same images as the run's own LoRA folder."""
    import subprocess
    import sys

    import torch
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import load_file

    from dreamsweep.training.lora import lora_base
    from tests.helpers import ROOT

    command = [sys.executable, "-m", "dreamsweep.cli", "export", str(lora_run), "--out",
               str(tmp_path), "--format", "lora-kohya", "--format", "single-file"]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = next(tmp_path.iterdir())
    kohya = out / f"{out.name}-lora.safetensors"
    tensors = load_file(str(kohya))
    assert {t.item() for k, t in tensors.items() if k.endswith(".alpha")} == {8.0}
    assert any(k.startswith("lora_te_") for k in tensors)  # the text encoder's adapters too

    def image(pipe):
        pipe.set_progress_bar_config(disable=True)
        generator = torch.Generator().manual_seed(0)
        return pipe("a photo of sks toy", num_inference_steps=2, generator=generator,
                    output_type="pt").images  # fmt: skip

    base = lora_base(lora_run / "best")
    ours = StableDiffusionPipeline.from_pretrained(base)
    ours.load_lora_weights(str(lora_run / "best"))
    theirs = StableDiffusionPipeline.from_pretrained(base)
    theirs.load_lora_weights(str(kohya))
    torch.testing.assert_close(image(theirs), image(ours), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["loha", pytest.param("lokr", marks=pytest.mark.exhaustive)])
def test_loha_and_lokr_train_and_reload_to_what_was_scored(kind, tmp_path):
    """peft's LyCORIS variants: saved in peft's format, read back by the same loader."""
    from dreamsweep.cells import Cell
    from dreamsweep.evaluation.evaluator import EvalSet, sample_spec
    from dreamsweep.evaluation.sampling import generate
    from dreamsweep.training.lora import load_lora_components
    from tests.helpers import compose_config

    run = tmp_path / "run"
    settings = (*LORA, f"method.type={kind}")
    proc = train_cli(run, *settings)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run / "best" / "unet" / "adapter_model.safetensors").exists()
    best = json.loads((run / "best" / "cell.json").read_text())
    cfg = compose_config(*settings)
    images = generate(load_lora_components(run / "best"),
                      sample_spec(cfg, Cell.from_record(best).sampling),
                      EvalSet.from_config(cfg).jobs)  # fmt: skip
    scored = run / "eval" / f"step_{best['step']:06d}" / best["cell"] / "p00_s0.png"
    assert list(images[0].getdata()) == list(Image.open(scored).convert("RGB").getdata())
