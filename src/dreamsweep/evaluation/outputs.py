"""Writing one evaluated cell into the run folder: PNGs, a contact sheet, scores.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from PIL import Image


def cell_dir(run_dir: Path, step: int, cell: str) -> Path:
    return run_dir / "eval" / f"step_{step:06d}" / cell


def contact_sheet(rows: list[list[Image.Image]]) -> Image.Image:
    """A grid: one row per prompt (seeds across), the class-prompt samples as the last row."""
    width = max(len(r) for r in rows)
    w, h = rows[0][0].size
    sheet = Image.new("RGB", (width * w, len(rows) * h), "white")
    for y, row in enumerate(rows):
        for x, image in enumerate(row):
            sheet.paste(image, (x * w, y * h))
    return sheet


def write_cell(
    run_dir: Path,
    cell: str,
    step: int,
    samples: list[Image.Image],
    class_samples: list[Image.Image],
    eval_set,
    scores: dict,
) -> Path:
    """Write to `<cell>.tmp` and rename, so a reader never sees half a cell."""
    final = cell_dir(run_dir, step, cell)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = []
    for job, p, image in zip(eval_set.jobs, eval_set.job_prompt, samples, strict=True):
        name = f"p{p:02d}_s{job.seed}.png"
        image.save(tmp / name)
        files.append(name)
    for job, image in zip(eval_set.class_jobs, class_samples, strict=True):
        image.save(tmp / f"class_s{job.seed}.png")
    per_row = len(eval_set.class_jobs)
    rows = [samples[i : i + per_row] for i in range(0, len(samples), per_row)]
    contact_sheet(rows + [class_samples]).save(tmp / "grid.png")
    (tmp / "scores.json").write_text(
        json.dumps({**scores, "files": files}, indent=2, sort_keys=True, default=str)
    )
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final
