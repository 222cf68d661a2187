"""Reports from real tiny sweeps: the demo grid (with failed runs) and a pruned Optuna search."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from PIL import Image

from dreamsweep.report.export import export_report
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def grid_report(demo_grid, tmp_path_factory) -> Path:
    sweep_dir, _ = demo_grid
    return export_report(sweep_dir, tmp_path_factory.mktemp("reports") / "demo")


@pytest.fixture(scope="module")
def search_report(pruned_search, tmp_path_factory) -> Path:
    sweep_dir, _ = pruned_search
    return export_report(sweep_dir, tmp_path_factory.mktemp("reports") / "search")


def figures_named_in(report: Path) -> list[str]:
    page = (report / "index.html").read_text()
    return sorted(p.name for p in (report / "figures").iterdir() if f"figures/{p.name}" in page)


def test_the_grid_report_has_every_page_and_figure(grid_report):
    for name in ("index.html", "report.md", "best.json", "cells.csv"):
        assert (grid_report / name).is_file()
    figures = sorted(p.name for p in (grid_report / "figures").iterdir())
    for expected in (
        "curves_objective.png",
        "curves_dino.png",
        "curves_clip_t.png",
        "pareto.png",
        "heatmap.png",
        "samples_runs.png",
        "samples_schedulers.png",
        "val_loss.png",
    ):
        assert expected in figures
    for name in figures:
        with Image.open(grid_report / "figures" / name) as image:
            image.verify()  # a valid PNG, not just a file
            assert image.format == "PNG"
    assert figures_named_in(grid_report) == figures  # and the page shows every one


def test_best_json_names_the_cell_with_the_highest_objective_in_the_table(grid_report):
    best = json.loads((grid_report / "best.json").read_text())["best"]
    with (grid_report / "cells.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if int(r["step"]) > 0 and r["objective"]]
    top = max(rows, key=lambda r: float(r["objective"]))
    assert (best["run"], best["step"], best["cell"]) == (top["run"], int(top["step"]), top["cell"])
    assert best["objective"] == pytest.approx(float(top["objective"]))
    assert best["command"].startswith("python train.py +sweep=demo")
    assert "eval.schedulers=[" + best["scheduler"] + "]" in best["command"]
    changed = best["changed_settings"]  # what differs from conf/'s default (the toy world)
    assert changed["model.name"] == "tiny" and changed["train.max_steps"] == best["step"]


def test_failed_runs_are_shown_with_their_reason(grid_report):
    summary = json.loads((grid_report / "best.json").read_text())["sweep"]
    assert summary["runs"] == {"complete": 2, "failed": 2}
    page = (grid_report / "index.html").read_text()
    assert page.count('class="state state-failed"') == 2
    assert "optim.lr: must be &gt; 0" in page


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def test_the_page_parses_and_shows_prompts_as_text_not_markup(grid_report):
    page = (grid_report / "index.html").read_text()
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert "b" not in parser.tags and "script" not in parser.tags
    assert "sks toy <b>on</b> the beach & sand" in "".join(parser.text)  # shown as typed
    assert "&lt;b&gt;on&lt;/b&gt; the beach &amp; sand" in page
    markdown = (grid_report / "report.md").read_text()
    prose = "".join(markdown.split("```")[::2])  # code blocks show the command verbatim
    assert "<b>on</b>" not in prose and "&lt;b&gt;on&lt;/b&gt;" in prose
    assert 'src="http' not in page and "<link" not in page  # no network needed


def test_the_search_report_shows_pruned_trials_and_the_study(search_report):
    figures = sorted(p.name for p in (search_report / "figures").iterdir())
    for name in ("optuna_history.png", "optuna_importances.png", "optuna_intermediate.png"):
        assert name in figures
    summary = json.loads((search_report / "best.json").read_text())
    assert summary["sweep"]["runs"].get("pruned", 0) >= 1
    assert summary["optuna"]["trials"] == 5 and len(summary["optuna"]["best_trials"]) == 1
    page = (search_report / "index.html").read_text()
    assert 'class="state state-pruned"' in page and "pruned by the Optuna pruner" in page


def test_a_failed_export_keeps_the_previous_report(grid_report, tmp_path, monkeypatch):
    out = tmp_path / "report"
    shutil.copytree(grid_report, out)
    before = (out / "best.json").read_text()

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("dreamsweep.report.export.render_pages", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_report(Path(json.loads(before)["sweep"]["folder"]), out)
    assert (out / "best.json").read_text() == before
    assert not list(tmp_path.glob(".report.*tmp"))  # the staging folder is gone


def test_the_command_line_names_a_folder_without_runs(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "dreamsweep.report", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "no run folders" in proc.stderr and str(tmp_path) in proc.stderr


def test_the_command_line_logs_the_report_to_an_offline_wandb_run(demo_grid, tmp_path):
    sweep_dir, _ = demo_grid
    dreamsweep = Path(sys.executable).with_name("dreamsweep")  # the console script
    proc = subprocess.run(
        [str(dreamsweep), "report", str(sweep_dir), "--reports-dir", str(tmp_path), "--wandb"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = tmp_path / f"demo-{sweep_dir.name}"  # reports/<sweep name>-<folder name>
    assert f"report: {report / 'index.html'}" in proc.stdout
    link = json.loads((report / "best.json").read_text())["wandb"]
    assert link["mode"] == "offline" and link["url"] is None
    run = report / link["dir"]  # relative to the report folder
    assert run.parent == report / "wandb" and run.name.startswith("offline-run-")
    assert list(run.glob("*.wandb"))  # the run's log, what `wandb sync` uploads
    log = next(run.glob("*.wandb")).read_bytes()
    assert b"demo-best-model" in log  # the winner's weights as a model artifact


def test_chromium_renders_the_page(grid_report, tmp_path):
    from dreamsweep.report.screenshot import TEMPLATE_KEY, screenshot, template_digest

    if shutil.which("chromium") is None:
        pytest.skip("Debian's chromium is not installed (tools/install-test-services installs it)")
    shot = screenshot(grid_report / "index.html", tmp_path / "page.png")
    with Image.open(shot) as image:
        assert image.size == (1280, 2400) and image.text[TEMPLATE_KEY] == template_digest()
        colours = image.convert("L").getextrema()
    assert colours[0] < 50 and colours[1] > 200  # text and figures drawn, not a blank page


def test_the_readme_shows_the_page_the_current_template_draws():
    """docs/report_demo.png is rendered by `python -m dreamsweep.report.screenshot` from the
    demo's report; it records the template it shows, so a change to the page fails here until
    the picture is made again (the command is in the README)."""
    from dreamsweep.report.screenshot import TEMPLATE_KEY, template_digest

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "](docs/report_demo.png)" in readme and "dreamsweep.report.screenshot" in readme
    with Image.open(ROOT / "docs" / "report_demo.png") as image:
        assert image.text.get(TEMPLATE_KEY) == template_digest(), "regenerate the screenshot"


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (tools/install-test-services installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars"]  # fmt: skip
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True,
                          timeout=120, check=True)  # fmt: skip


def test_a_long_setting_value_wraps_inside_the_page_at_1280_px(grid_report, tmp_path):
    """The "settings that differ" card with a value of 300 characters and no space: the page
    stays 1280 px wide (the width of the document is measured by the browser)."""
    page = (grid_report / "index.html").read_text(encoding="utf-8")
    start = page.index("<h3>Settings that differ from the defaults</h3>")
    cell = page.index("<td><code>", page.index("</code></td>", start) + 1)
    long_value = "x" * 300
    probe = page[:cell] + f"<td><code>{long_value}</code></td>" + page[cell:]
    probe = probe.replace(
        "</body>", "<script>document.title = 'width=' + document.documentElement.scrollWidth"
        "</script></body>"
    )  # fmt: skip
    (grid_report / "probe.html").write_text(probe, encoding="utf-8")
    try:
        dom = _chromium(tmp_path, "--window-size=1280,900", "--dump-dom",
                        (grid_report / "probe.html").as_uri()).stdout  # fmt: skip
    finally:
        (grid_report / "probe.html").unlink()
    width = int(dom.split("<title>width=")[1].split("<")[0])
    assert long_value in dom and width <= 1280


def test_the_best_cell_s_weights_exist_and_load(grid_report):
    """The winner named in best.json has its weights on disk, as a loadable pipeline."""
    from diffusers import StableDiffusionPipeline

    best = json.loads((grid_report / "best.json").read_text())["best"]
    weights = Path(best["weights_path"])
    assert weights.name == "best" and "kept when it became the run's best" in best["weights_note"]
    kept = json.loads((weights / "cell.json").read_text())
    assert (kept["step"], kept["cell"]) == (best["step"], best["cell"])
    assert StableDiffusionPipeline.from_pretrained(weights).unet is not None
    page = (grid_report / "index.html").read_text()
    relative = Path(os.path.relpath(weights, grid_report)).as_posix()
    assert f'<a href="{relative}">' in page and "dreamsweep export " in page


def test_every_link_of_the_page_resolves(grid_report):
    """The contents' anchors exist; run folders, weights, cell grids, scores and cells.csv
    are there to click."""
    import re
    from urllib.parse import unquote

    page = (grid_report / "index.html").read_text()
    anchors = set(re.findall(r'id="([^"]+)"', page))
    links = re.findall(r'href="([^"]+)"', page)
    assert {"#best", "#runs", "#figures", "#cells", "cells.csv"} <= set(links)
    assert any(link.endswith("/grid.png") for link in links)
    assert any(link.endswith("/scores.json") for link in links)
    assert any(link.startswith("gallery/best_") for link in links)  # the best cell's samples
    assert any(link.startswith("gallery/base_") for link in links)  # next to the base model's
    for link in links:
        if link.startswith("#"):
            assert link[1:] in anchors, link
        elif not link.startswith("http"):  # relative: the report and its runs can move
            assert (grid_report / unquote(link)).exists(), link
    assert "file://" not in page
    assert page.index('id="runs"') < page.index('id="figures"')  # tables before figures


def test_a_corrupt_result_and_a_torn_cell_line_are_skipped_and_counted(demo_grid, tmp_path):
    """What a kill or a bad disk leaves in two runs: the report still renders every run, says
    which file of which run it could not read, and counts what it left out."""
    sweep = tmp_path / "sweep"
    shutil.copytree(demo_grid[0], sweep)
    trained = sorted(p.parent for p in sweep.glob("*/result.json")
                     if json.loads(p.read_text())["state"] == "complete")  # fmt: skip
    corrupt, torn = trained[0], trained[1]
    text = (corrupt / "result.json").read_text()
    (corrupt / "result.json").write_text(text[: len(text) // 2])
    lines = (torn / "metrics.jsonl").read_text().splitlines(keepends=True)
    last_cell = max(i for i, line in enumerate(lines) if '"kind": "eval"' in line)
    kept = "".join(lines[:last_cell]) + lines[last_cell][:40]  # killed while writing it
    (torn / "metrics.jsonl").write_text(kept)

    command = [sys.executable, "-m", "dreamsweep.cli", "report", str(sweep), "--out",
               str(tmp_path / "report")]  # fmt: skip
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    count = "1 unreadable line(s) of metrics.jsonl (1 of them scored cells) and 1 unreadable"
    page = (tmp_path / "report" / "index.html").read_text()
    markdown = (tmp_path / "report" / "report.md").read_text()
    for text in (page, markdown):
        assert "Read with gaps" in text and count in text
        assert f"{corrupt.name}/result.json: not valid JSON" in text
        assert (
            f"{torn.name}/metrics.jsonl: 1 unreadable line(s) skipped (line {last_cell + 1}" in text
        )
    summary = json.loads((tmp_path / "report" / "best.json").read_text())
    assert summary["best"] is not None and len(summary["sweep"]["skipped"]) == 2
    runs = summary["sweep"]["runs"]  # every run listed, the corrupt one as such
    assert runs["unreadable"] == 1 and sum(runs.values()) == len(list(sweep.glob("*/.hydra")))
