"""What `python train.py --help` tells a newcomer, and the one-line answer to a missing `+`."""

from __future__ import annotations

from tests.helpers import train_py


def test_help_says_what_dreamsweep_is_its_groups_and_the_commands_to_start_with():
    proc = train_py("--help", timeout=120, env={})
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert text.startswith("DreamSweep: measured hyperparameter experiments for DreamBooth")
    assert "python train.py -m +sweep=demo" in text and "dreamsweep report" in text
    groups = ("model: sd15, sd21, sdxl, tiny, tiny_xl, toyworld, toyworld_xl", "sweep: demo")
    for group in (*groups, "method: dreambooth, lora, pivotal, textual_inversion"):
        assert group in text
    assert "powered by Hydra" not in text


def test_a_sweep_given_without_plus_is_one_line_naming_the_fix():
    proc = train_py("sweep=demo", timeout=120, env={})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: sweep=demo: the sweep group is added to a run, not overridden: use +sweep=demo "
        "(e.g. python train.py -m +sweep=demo)"
    ]
