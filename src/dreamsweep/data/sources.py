"""Where a run's subject images come from, by `data` name: the one table config_checks.py
checks `data` against and `dataset.instance_dir` reads. An entry names the bundled folder of
images ("module:constant", imported when used), or None: the images are in data.instance_dir
(a user's folder, or a shipped one that the data config names).
"""

from __future__ import annotations

DATA: dict[str, str | None] = {
    "toy": "dreamsweep.data.toy:TOY_SUBJECT_DIR",  # six drawn images shipped in assets/
    "toyworld": None,  # data.instance_dir=${asset:toyworld/subject} (conf/data/toyworld.yaml)
    "folder": None,
}
