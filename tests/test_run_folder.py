"""The run folder's cell layout: one module gives the paths, and reads a cell's key back."""

from __future__ import annotations

from pathlib import Path

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
