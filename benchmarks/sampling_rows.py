"""The sampling rows of SD and SDXL alike: our evaluation sampling vs one plain pipeline call
per image, per model (sections.eval_rows, sections_xl.eval_xl_rows)."""

from __future__ import annotations

from processes import Context, Side, interleaved
from rows import Row, Target


def sampling_rows(ctx: Context, models: list[tuple[list[str], str]], title: str) -> list[Row]:
    """One row per (side.py model arguments, label): seconds per image, ours vs plain, and
    whether both sides drew the same images (their mean pixel values)."""
    warmup, repeats = (0, 2) if ctx.quick else (1, 6)
    rows = []
    for model_args, label in models:
        sides = (Side(ctx, kind, *model_args) for kind in ("eval-ours", "eval-plain"))
        pair = interleaved(*sides, warmup, repeats)
        images = pair.ours_info["images"]
        ours, plain = (m / images for m in pair.medians)
        a, b = pair.values
        gap = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
        rows.append(
            Row(
                f"{title} ({label})",
                "s/image",
                ours,
                plain,
                Target("<=", 0.50),
                pair.ours_peak_mb,
                pair.baseline_peak_mb,
                f"{images} images, {pair.ours_info['spec']}; median of {repeats} interleaved; "
                f"same images: max |mean pixel diff| {gap:.3f}",
            )
        )
    return rows
