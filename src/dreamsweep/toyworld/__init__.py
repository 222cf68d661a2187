"""A synthetic world of coloured shapes where a tiny Stable Diffusion really learns on a CPU.

``world`` draws captioned pictures, ``oracle`` scores pictures, ``pipeline`` loads the
shipped base model; ``tools/pretrain_toyworld.py`` trains and exports both.
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets" / "toyworld"
BASE_DIR = ASSETS_DIR / "base"
ORACLE_DIR = ASSETS_DIR / "oracle"
SUBJECT_DIR = ASSETS_DIR / "subject"
XL_ASSETS_DIR = ASSETS_DIR.parent / "toyworld_xl"  # the same world, an SDXL-shaped base
XL_BASE_DIR = XL_ASSETS_DIR / "base"
