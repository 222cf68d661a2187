"""The run folder: one module gives a cell's paths (and reads a cell's key back); the readers
of a finished run get its settings typed, older run folders too."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dreamsweep.config import ConfigError
from dreamsweep.report.collect import collect
from dreamsweep.report.wandb_log import sweep_tracker
from dreamsweep.runs import (
    cell_dir,
    cell_key,
    class_sample_file,
    grid_file,
    parse_cell_key,
    sample_file,
    scores_file,
)


def test_a_cell_folder_and_its_files():
    folder = cell_dir(Path("/runs/lr_1e-4"), 40, "ddim-n20-g3-ema")
    assert folder == Path("/runs/lr_1e-4/eval/step_000040/ddim-n20-g3-ema")
    assert sample_file(folder, 3, 17) == folder / "p03_s17.png"
    assert class_sample_file(folder, 17) == folder / "class_s17.png"
    assert grid_file(folder) == folder / "grid.png"
    assert scores_file(folder) == folder / "scores.json"


def test_a_cell_key_reads_back_to_its_step_and_cell():
    key = cell_key(40, "ddim-n20-g3-ema")
    assert key == "step_000040/ddim-n20-g3-ema"
    assert parse_cell_key(key) == (40, "ddim-n20-g3-ema")
    assert parse_cell_key("/step_40/euler-n30-g7.5-raw/") == (40, "euler-n30-g7.5-raw")
    for not_a_key in ("best", "step_40", "steps_40/ddim", "step_40/a/b", "ddim-n20-g3-ema"):
        assert parse_cell_key(not_a_key) is None, not_a_key


CONF = Path(__file__).resolve().parents[1] / "conf"


def older_run(folder: Path, conf: Path | None) -> Path:
    """A run folder whose config.yaml was written before `eval.val_class_images` existed,
    started from the conf/ folder ``conf`` (None: that folder is gone)."""
    from hydra import compose, initialize_config_dir

    from dreamsweep.config import load_config, to_dict

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        settings = to_dict(load_config(compose(config_name="train"), check_machine=False))
    del settings["eval"]["val_class_images"]
    settings["tracker"]["project"] = "older-project"
    (folder / ".hydra").mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(settings))
    (folder / "result.json").write_text('{"state": "complete"}')
    sources = [{"path": str(conf or folder / "gone"), "provider": "main"}]
    hydra = {"hydra": {"runtime": {"config_sources": sources}}}
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump(hydra))
    return folder


def test_an_older_run_folder_loads_as_typed_settings_with_conf_defaults(tmp_path):
    """What export, the W&B report and rescoring read: the typed settings of config.yaml."""
    run = collect(older_run(tmp_path / "run", CONF)).runs[0]
    assert run.settings.tracker.project == "older-project"
    assert run.settings.eval.val_class_images == run.defaults["eval"]["val_class_images"]
    assert sweep_tracker(collect(tmp_path / "run")).project == "older-project"


def test_an_older_run_folder_without_its_conf_names_the_missing_key(tmp_path):
    run = collect(older_run(tmp_path / "run", None)).runs[0]
    with pytest.raises(ConfigError, match=r"config\.yaml: eval\.val_class_images: has no value"):
        print(run.settings)


def test_rescoring_an_older_run_takes_the_keys_it_lacks_from_the_command(tmp_path):
    from hydra import compose, initialize_config_dir

    from dreamsweep.evaluation.rescore import rescore_config

    run_dir = older_run(tmp_path / "run", None)
    (run_dir / "model").mkdir()
    overrides = [f"run={run_dir}", "eval.val_class_images=3", "eval.num_prompts=1"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        raw = compose(config_name="evaluate", overrides=overrides)
    cfg, scored = rescore_config(raw, overrides[2:])
    assert scored == run_dir.resolve()
    assert cfg.tracker.project == "older-project"  # the run's own settings
    assert cfg.eval.num_prompts == 1  # what the command changes
    assert cfg.eval.val_class_images == 3  # the key the run lacks: the composed value
