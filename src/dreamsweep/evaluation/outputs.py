"""Writing one evaluated cell into the run folder: PNGs, a contact sheet, its scores."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from dreamsweep.atomic import new_folder
from dreamsweep.runs import cell_dir, class_sample_file, grid_file, sample_file, scores_file


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
    """Built beside its place and swapped in, so a reader never sees half a cell."""
    final = cell_dir(run_dir, step, cell)
    with new_folder(final) as tmp:
        files = []
        for job, p, image in zip(eval_set.jobs, eval_set.job_prompt, samples, strict=True):
            file = sample_file(tmp, p, job.seed)
            image.save(file)
            files.append(file.name)
        for job, image in zip(eval_set.class_jobs, class_samples, strict=True):
            image.save(class_sample_file(tmp, job.seed))
        per_row = len(eval_set.class_jobs)
        rows = [samples[i : i + per_row] for i in range(0, len(samples), per_row)]
        contact_sheet(rows + [class_samples]).save(grid_file(tmp))
        scores_file(tmp).write_text(
            json.dumps({**scores, "files": files}, indent=2, sort_keys=True, default=str)
        )
    return final
