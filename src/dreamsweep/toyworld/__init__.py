"""A synthetic world of coloured shapes where a tiny Stable Diffusion really learns on a CPU.

``world`` draws captioned pictures, ``oracle`` scores pictures, ``pipeline`` loads the
shipped base model; ``tools/pretrain_toyworld.py`` trains and exports both.
"""

from dreamsweep import ASSETS_DIR

WORLD_DIR = ASSETS_DIR / "toyworld"
BASE_DIR = WORLD_DIR / "base"
ORACLE_DIR = WORLD_DIR / "oracle"
SUBJECT_DIR = WORLD_DIR / "subject"
XL_WORLD_DIR = ASSETS_DIR / "toyworld_xl"  # the same world, an SDXL-shaped base
XL_BASE_DIR = XL_WORLD_DIR / "base"
