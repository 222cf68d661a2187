"""Model families: what differs between architectures (SD 1.x/2.x, SDXL, ...) lives here.

One module per family, each ending in a `Family` record of plain functions (`base.py`); this
table is the only place that knows them all. Training, sampling and saving ask `family(c)` and
never which architecture they drive; a new architecture (a flow-matching SD3/Flux) is one more
module and one more entry.
"""

from __future__ import annotations

from dreamsweep.models.families import sd, sdxl
from dreamsweep.models.families.base import Conditioning, Family

FAMILIES: dict[str, Family] = {"sd": sd.FAMILY, "sdxl": sdxl.FAMILY}

__all__ = ["FAMILIES", "Conditioning", "Family", "family", "family_of_pipeline"]


def family(components) -> Family:
    """The family of an ``SDComponents``."""
    return FAMILIES[components.family]


def family_of_pipeline(class_name: str, where: str) -> Family:
    """The family whose pipeline class is ``class_name`` (model_index.json's `_class_name`)."""
    for entry in FAMILIES.values():
        if entry.pipeline_class.__name__ == class_name:
            return entry
    known = ", ".join(f.pipeline_class.__name__ for f in FAMILIES.values())
    raise ValueError(
        f"{where}: pipeline class {class_name!r} is not one DreamSweep trains ({known})"
    )
