"""Every named choice is one table: the config check lists its names, the code builds from it,
and a name it does not hold is one line naming the key and every known name."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dreamsweep.choices import ATTENTION, DATA, LORA_TYPES, METHODS, NOISES, OPTIMIZERS, TRACKERS
from dreamsweep.config import ConfigError
from dreamsweep.evaluation.schedulers import SCHEDULERS
from dreamsweep.export.choose import ExportError
from dreamsweep.export.command import export
from dreamsweep.export.formats import FORMATS
from dreamsweep.launch import write_run_config
from dreamsweep.metrics.registry import SCORERS
from dreamsweep.registry import load
from dreamsweep.training.loss import training_noise
from tests.helpers import FAST, ROOT, compose_config

UNKNOWN_NAMES = [
    pytest.param(lambda: compose_config("train.noise=pink"), "train.noise", NOISES, id="noise"),
    pytest.param(lambda: compose_config("optim.name=sgd"), "optim.name", OPTIMIZERS, id="optim"),
    pytest.param(
        lambda: compose_config("train.attention=flash"), "train.attention", ATTENTION, id="attn"
    ),
    pytest.param(lambda: compose_config("tracker.name=mlflow"), "tracker", TRACKERS, id="tracker"),
    pytest.param(lambda: compose_config("method.name=hypernet"), "method", METHODS, id="method"),
    pytest.param(lambda: compose_config("data.name=laion"), "data", DATA, id="data"),
    pytest.param(
        lambda: compose_config("metrics.scorers=[fid]"), "metrics.scorers", SCORERS, id="scorer"
    ),
    pytest.param(
        lambda: compose_config("eval.schedulers=[lcm]"), "eval.schedulers", SCHEDULERS, id="sched"
    ),
    pytest.param(lambda: export(Path("."), formats=("ckpt",)), "--format", FORMATS, id="export"),
]


@pytest.mark.parametrize(("attempt", "key", "table"), UNKNOWN_NAMES)
def test_an_unknown_name_is_one_line_naming_the_key_and_every_known_name(attempt, key, table):
    with pytest.raises((ConfigError, ExportError)) as caught:
        attempt()
    message = str(caught.value)
    assert message.startswith(f"{key}: ") and "\n" not in message
    assert all(name in message for name in table)


def test_an_unknown_noise_is_an_error_not_gaussian_noise():
    """A config that skipped the checks (or a table and a check out of step) fails loudly."""
    latents, generator = torch.zeros(1, 4, 8, 8), torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="train.noise: 'pink' is not one of: gaussian"):
        training_noise(latents, SimpleNamespace(noise="pink"), generator)


@pytest.mark.parametrize(
    "reference",
    [
        *NOISES.values(),
        *(o.build for o in OPTIMIZERS.values()),
        *(a.build for a in ATTENTION.values()),
        *LORA_TYPES.values(),
        *(m.add_trained for m in METHODS.values() if m.add_trained),
        *(t for t in TRACKERS.values() if t),
        *(d for d in DATA.values() if d),
        *(s.score for s in SCORERS.values()),
        *(f.write for f in FORMATS.values()),
    ],
)
def test_every_builder_a_table_names_exists(reference):
    assert load(reference) is not None


def test_a_config_check_of_every_table_imports_neither_torch_nor_diffusers():
    code = (
        "import sys\n"
        "from tests.helpers import compose_config\n"
        "from dreamsweep.config import ConfigError\n"
        "from dreamsweep.export.formats import formats_help\n"
        "formats_help()\n"
        "for bad in ('train.noise=pink', 'metrics.scorers=[fid]', 'data.name=x'):\n"
        "    try:\n        compose_config(bad)\n    except ConfigError as e:\n        print(e)\n"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert (
        out.count("is not one of") == 2
        and "metrics.scorers: unknown ['fid']" in out
        and out.strip().endswith("[]")
    )


def test_the_export_help_lists_every_format_of_the_table():
    out = subprocess.run(
        [sys.executable, "-m", "dreamsweep.cli", "export", "--help"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    text = re.sub(r"-\s+", "-", " ".join(out.split()))  # argparse wraps after a hyphen
    assert all(f"{name}: {form.help}" in text for name, form in FORMATS.items())


REGISTER_AND_TRAIN = """
import sys
from dreamsweep.metrics.registry import SCORERS
from tests.made_up_scorer import ENTRY
SCORERS["brightness"] = ENTRY
from dreamsweep.worker import main
sys.exit(main(sys.argv[1]))
"""


def test_a_made_up_scorer_is_one_module_and_one_entry(tmp_path, monkeypatch):
    """tests/made_up_scorer.py plus its entry in the table: its score reaches scores.json,
    the run's W&B keys, the report's curves and cells.csv, and no other file knows it."""
    from dreamsweep.report.export import export_report
    from tests.made_up_scorer import ENTRY

    monkeypatch.setitem(SCORERS, "brightness", ENTRY)
    cfg = compose_config(*FAST, "metrics.scorers=[clip_t,brightness]", "tracker=wandb")
    run = tmp_path / "run"
    config_file = write_run_config(cfg, run)
    subprocess.run(
        [sys.executable, "-c", REGISTER_AND_TRAIN, str(config_file)], cwd=ROOT, check=True,
        capture_output=True, timeout=600,
    )  # fmt: skip

    scores = [json.loads(p.read_text()) for p in run.glob("eval/step_*/*/scores.json")]
    assert scores and all(0 <= s["scores"]["brightness"] <= 1 for s in scores)
    assert all(
        len(s["samples"]["scores"]["brightness"]) == len(s["samples"]["seed"]) for s in scores
    )
    history = b"".join(p.read_bytes() for p in run.glob("wandb/offline-run-*/*.wandb"))
    assert b"/brightness" in history  # eval/<cell>/brightness

    report = export_report(run, out=tmp_path / "report")
    assert (report / "figures" / "curves_brightness.png").is_file()
    with open(report / "cells.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert all(0 <= float(r["brightness"]) <= 1 for r in rows)
