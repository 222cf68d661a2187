"""Score saved weights under any sampling settings: `python evaluate.py run=<run folder> ...`,
or a base model (the baseline): `python evaluate.py model=sd15 model.path=...`."""

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from dreamsweep.config import ConfigError
from dreamsweep.console import quiet_library_noise
from dreamsweep.evaluation.rescore import rescore, rescore_config


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(raw: DictConfig) -> float | None:
    try:
        quiet_library_noise()
        hydra_cfg = HydraConfig.get()
        cfg, run_dir = rescore_config(raw, list(hydra_cfg.overrides.task))
        return rescore(cfg, run_dir, Path(hydra_cfg.runtime.output_dir))
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
