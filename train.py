"""Train one DreamBooth run: `python train.py [overrides]`; a sweep: `python train.py -m ...`.

Composes and validates the config (nothing is loaded before it is valid), writes it into the
run folder and runs the worker in a subprocess. Returns the objective for Hydra sweepers. This
process imports neither torch nor diffusers: only the worker does, once.
"""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from dreamsweep.config import ConfigError, added_group_hint, load_config
from dreamsweep.data.images import ImageFolderError
from dreamsweep.launch import RunFailed, record_failure, run_training, runs_side_by_side


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(raw: DictConfig) -> float | None:
    hydra_cfg = HydraConfig.get()
    try:
        cfg = load_config(raw)
        side_by_side = runs_side_by_side(hydra_cfg)  # runs sharing this machine's cores
        return run_training(cfg, Path(hydra_cfg.runtime.output_dir), side_by_side)
    except (ConfigError, ImageFolderError, FileNotFoundError, RunFailed) as err:
        if not getattr(err, "shown", False):
            print(f"error: {err}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            record_failure(Path(hydra_cfg.runtime.output_dir), err)
            return None  # result.json says why; a sweep goes on with the other runs
        sys.exit(1)


if __name__ == "__main__":
    if hint := added_group_hint(sys.argv[1:]):
        sys.exit(f"error: {hint}")
    main()
