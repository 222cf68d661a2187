"""Pretrain the toy-world Stable Diffusion and its oracle on one CPU thread.

Everything trains under --work (default ~/.cache/dreamsweep/toyworld_work, or under
$DREAMSWEEP_CACHE_DIR); only ``export`` (or ``base --export``) writes the package assets in
src/dreamsweep/assets/toyworld/.

    export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
    nice -n 10 python tools/pretrain_toyworld.py vae --minutes 6   # tokenizer + VAE
    nice -n 10 python tools/pretrain_toyworld.py oracle            # ~4 min
    nice -n 10 python tools/pretrain_toyworld.py base --minutes 100 --export
    python tools/pretrain_toyworld.py sheet    # oracle-scored contact sheet of the latest snapshot
    python tools/pretrain_toyworld.py export   # latest snapshot + oracle + subject -> assets

The SDXL-shaped base (two text encoders, ``text_time`` conditioning, the same VAE) trains in
its own folder (default toyworld_xl_work beside toyworld_work) and resumes with the same
command; ``sheet --work`` scores it:

    nice -n 10 python tools/pretrain_toyworld.py base-xl --minutes 600
    python tools/pretrain_toyworld.py sheet --work ~/.cache/dreamsweep/toyworld_xl_work
    python tools/pretrain_toyworld.py export-xl   # latest snapshot -> assets/toyworld_xl/base

``base`` resumes from --work/base_checkpoint.pt; without one it warm-starts from the
committed assets/toyworld/base (weights only), so a new machine continues the shipped base.
The logic lives in dreamsweep.toyworld; see dreamsweep/toyworld/cli.py.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from dreamsweep.toyworld.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
