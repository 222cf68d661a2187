"""A scorer that is not in the registry: the mean brightness of each sample (0 black, 1 white).
tests/test_registries.py adds it to the table, to show that one module plus one entry is all
a new score needs to reach scores.json, W&B, the report's curves and cells.csv."""

from __future__ import annotations

import numpy as np

from dreamsweep.metrics.registry import CellImages, Score, Scored, ScorerSpec


def score_brightness(cell: CellImages) -> Scored:
    """Per sample, its mean grey level in [0, 1]."""
    values = [
        float(np.asarray(im.convert("L"), dtype=np.float64).mean() / 255) for im in cell.samples
    ]
    return Scored({"brightness": values})


ENTRY = ScorerSpec(
    "tests.made_up_scorer:score_brightness",
    features=(),
    scores=(Score("brightness", "brightness (mean grey level)", higher_is_better=True),),
)
