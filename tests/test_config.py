"""The composed config and the errors a user gets for bad settings, before anything loads."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch

from dreamsweep.config import ConfigError, to_dict
from tests.helpers import ROOT, compose_config, train_cli


def test_default_is_the_cpu_demo_on_the_shipped_toy_world():
    cfg = compose_config()
    assert cfg.model.name == "toyworld" and cfg.data.name == "toyworld"
    assert cfg.metrics.scorers == ["toyworld"] and cfg.model.path.endswith("assets/toyworld/base")
    assert cfg.optim.lr == cfg.model.lr == 1e-3 and cfg.train.noise == "offset"
    assert cfg.prior.enabled and cfg.ema.enabled and cfg.train.text_encoder
    assert cfg.tracker.name == "wandb" and cfg.tracker.mode == "offline"
    assert cfg.launcher.num_processes == 1
    assert to_dict(cfg)["optim"]["lr"] == cfg.optim.lr


def test_a_model_brings_its_own_learning_rates_and_an_override_still_wins():
    assert compose_config("model=tiny").optim.lr == 5e-6
    assert compose_config("model=toyworld", "method=lora").optim.lr == 1e-3
    assert compose_config("model=tiny", "method=lora").optim.lr == 1e-4
    assert compose_config("model=toyworld", "method=lora", "optim.lr=3e-4").optim.lr == 3e-4


def test_the_debug_config_is_the_tiny_model_in_a_few_steps():
    cfg = compose_config("+debug=fast", "train.max_steps=2")
    assert cfg.model.name == "tiny" and cfg.data.name == "toy" and cfg.tracker.name == "disk"
    assert cfg.train.max_steps == 2 and "clip_i" in cfg.metrics.scorers


def test_groups_switch_settings():
    cfg = compose_config(
        "prior=off",
        "ema=off",
        "tracker=disk",
        "launcher=multigpu",
        "optim.lr=1e-6",
        "train.text_encoder=false",
    )
    assert not cfg.prior.enabled and not cfg.ema.enabled
    assert cfg.tracker.name == "disk" and cfg.launcher.num_processes == 2
    assert cfg.optim.lr == 1e-6 and not cfg.train.text_encoder


def test_one_value_for_an_evaluation_axis_is_a_list_of_one():
    cfg = compose_config("eval.num_inference_steps=100", "eval.schedulers=ddim", "eval.seeds=3")
    assert cfg.eval.num_inference_steps == [100] and cfg.eval.schedulers == ["ddim"]
    assert cfg.eval.seeds == [3]
    assert compose_config("eval.guidance_scale=[5,7.5]").eval.guidance_scale == [5.0, 7.5]


def test_real_model_presets_need_a_path():
    with pytest.raises(ConfigError, match="model.path"):
        compose_config("model=sd15", "model.path=null")
    cfg = compose_config(
        "model=sd21",
        "model.path=/models/sd21",
        "data=folder",
        "data.instance_dir=/photos/dog",
        "data.class_name=dog",
    )
    assert cfg.model.path == "/models/sd21" and cfg.data.resolution == 768  # SD 2.x is 768 px


@pytest.mark.parametrize("model", ["sd15", "sd21"])
def test_real_models_get_real_model_defaults_not_the_cpu_demo(model, tmp_path):
    """`model=sd15 model.path=<a saved folder>` trains like the diffusers guide, not the demo."""
    cfg = compose_config(
        f"model={model}",
        f"model.path={tmp_path}",
        "data=folder",
        f"data.instance_dir={tmp_path}",
        "data.class_name=dog",
    )
    assert cfg.data.resolution == {"sd15": 512, "sd21": 768}[model]
    assert cfg.train.max_steps >= 400 and cfg.prior.num_images >= 100
    assert cfg.prior.sample_steps >= 50
    assert cfg.eval.num_prompts * len(cfg.eval.seeds) >= 16  # samples per cell
    assert cfg.eval.every_n_steps  # an overfitting curve, not just the two ends
    assert cfg.eval.schedulers == ["pndm"] and cfg.eval.guidance_scale == [7.5]
    assert cfg.train.noise == "gaussian" and cfg.optim.lr == 5e-6
    demo = compose_config()
    assert demo.data.resolution == demo.model.sample_size == 32
    assert demo.eval.schedulers == ["ddim"] and demo.eval.guidance_scale == [3.0]


def test_conf_holds_every_default_and_the_schema_none():
    """One source of defaults: every schema field is MISSING, so only conf/ gives values."""
    import dataclasses

    from omegaconf import MISSING

    from dreamsweep.config import RunConfig

    def missing(cls) -> list[str]:
        bad = []
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(f.type) or f.default_factory is not dataclasses.MISSING:
                bad += [f"{f.name}.{k}" for k in missing(f.default_factory)]
            elif f.default is not MISSING:
                bad.append(f.name)
        return bad

    assert missing(RunConfig) == []


def test_every_model_holds_out_class_images_for_the_validation_loss():
    real = ("model.path=/models/sd", "data=folder", "data.instance_dir=/d", "data.class_name=dog")
    counts = {
        m: compose_config(f"model={m}", *real).eval.val_class_images for m in ("sd15", "sd21")
    }
    counts |= {m: compose_config(f"model={m}").eval.val_class_images for m in ("toyworld", "tiny")}
    assert counts == {"sd15": 50, "sd21": 50, "toyworld": 50, "tiny": 8}
    assert compose_config("+debug=fast").eval.val_class_images == 2
    no_class = compose_config("prior=off", "data.class_name=''", "eval.val_class_images=0")
    assert no_class.eval.val_class_images == 0  # without a class name, none asked for: fine


def test_settings_are_frozen():
    cfg = compose_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_a_config_error_needs_neither_torch_nor_diffusers():
    code = (
        "import sys\n"
        "from tests.helpers import compose_config\n"
        "from dreamsweep.config import ConfigError\n"
        "try:\n    compose_config('optim.lr=-1')\nexcept ConfigError as e:\n    print(e)\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert "optim.lr: must be > 0" in out and out.strip().endswith("[]")


@pytest.mark.parametrize(
    ("overrides", "key", "hint"),
    [
        (["+train.learning_rate=1e-6"], "train.learning_rate", "Known keys of train"),
        (["train.max_steps=many"], "train.max_steps", "bad value"),
        (["optim.lr=0"], "optim.lr", "must be > 0"),
        (["optim.lr=-1e-6"], "optim.lr", "must be > 0"),
        (["data.resolution=500"], "data.resolution", "multiple of 8"),
        (["data.class_name=''"], "data.class_name", "needs a class name"),
        (["train.attention=xformers"], "train.attention", "needs a CUDA GPU"),
        (["launcher.mixed_precision=fp16"], "launcher.mixed_precision", "needs a CUDA GPU"),
        (["optim.lr_scheduler=warp"], "optim.lr_scheduler", "constant_with_warmup"),
        (["data=folder", "data.class_name=dog"], "data.instance_dir", "your subject's photos"),
        (["prior=off", "data.class_name=''"], "data.class_name", "eval.val_class_images=0"),
        (["eval.val_class_images=-1"], "eval.val_class_images", "must be >= 0"),
        (["prior.num_images=1000000"], "prior.num_images", "< 1,000,000"),
    ],
)
def test_bad_settings_name_the_key(overrides, key, hint):
    if torch.cuda.is_available() and "CUDA" in hint:
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError) as err:
        compose_config(*overrides)
    assert key in str(err.value) and hint in str(err.value)


def test_8bit_adam_without_bitsandbytes(monkeypatch):
    import importlib.util

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "bitsandbytes" else real_find_spec(name, *a),
    )
    with pytest.raises(ConfigError, match="bitsandbytes"):
        compose_config("optim=adamw8bit")


def test_cli_prints_the_composed_config():
    out = subprocess.run(
        [sys.executable, "train.py", "--cfg", "job", "optim.lr=2e-6"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "lr: 2.0e-06" in out and "class_name: toy" in out


def test_cli_rejects_bad_input_before_loading_anything(tmp_path):
    run_dir = tmp_path / "run"
    proc = train_cli(run_dir, "optim.lr=-1")
    assert proc.returncode == 1
    assert "optim.lr: must be > 0" in proc.stderr
    assert not (run_dir / "config.yaml").exists()


def test_many_processes_checking_one_new_folder_at_once_all_find_it_writable(tmp_path):
    """Two sweeps started in the same second share `${now}`: each checks the folder, and
    neither may see it vanish under the other's clean-up."""
    from concurrent.futures import ThreadPoolExecutor

    from dreamsweep.preflight import check_writable

    for round_ in range(20):
        folder = tmp_path / f"sweep{round_}" / "inner"
        with ThreadPoolExecutor(8) as pool:
            checks = [pool.submit(check_writable, folder, "hydra.sweep.dir", "") for _ in range(8)]
            for check in checks:
                check.result()  # raises the ConfigError if one check failed
