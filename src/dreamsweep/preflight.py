"""Checks of the places a run reads and writes, made by train.py before any model loads.

Each problem is one line that names the path and says what to do: a model path that does not
exist, is a text file or an empty folder; a cache or run folder that cannot be written (under
a regular file, on a read-only mount). Imports neither torch nor diffusers.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from contextlib import suppress
from pathlib import Path

from hydra.experimental.callback import Callback

from dreamsweep.config import ConfigError, RunConfig

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
SAFETENSORS_MAGIC_MAX_HEADER = 100 * 2**20  # a header longer than this is not a real file


def check_places(cfg: RunConfig, run_dir: Path) -> None:
    """Raise ConfigError for the first place that cannot work."""
    if cfg.model.path:
        check_model_path(str(cfg.model.path))
    check_writable(Path(cfg.cache_dir).expanduser(), "cache_dir", "set DREAMSWEEP_CACHE_DIR")
    check_writable(run_dir, "hydra.run.dir", "choose another hydra.run.dir")


def looks_local(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.endswith(SINGLE_FILE_SUFFIXES)


def check_model_path(source: str) -> None:
    """A local model path must be a diffusers folder or a .safetensors/.ckpt file; anything
    else that does not look like a path is taken as a hub id (checked when it loads)."""
    path = Path(source).expanduser()
    if not path.exists():
        if looks_local(source):
            raise ConfigError(
                f"model.path: {source} does not exist; give a diffusers folder, a "
                ".safetensors/.ckpt file or a hub id"
            )
        return
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            what = "an empty folder" if not any(path.iterdir()) else "a folder without"
            raise ConfigError(
                f"model.path: {source} is {what}"
                f"{' model_index.json' if what.endswith('without') else ''}; give a folder "
                "written by save_pretrained (unet/, vae/, text_encoder/, tokenizer/, scheduler/) "
                "or a .safetensors/.ckpt file"
            )
        return
    if path.suffix.lower() not in SINGLE_FILE_SUFFIXES:
        raise ConfigError(
            f"model.path: {source} is a file but not a checkpoint (.safetensors or .ckpt); give "
            "a diffusers folder or a single-file Stable Diffusion checkpoint"
        )
    if path.suffix.lower() == ".safetensors" and not _is_safetensors(path):
        raise ConfigError(
            f"model.path: {source} is not a valid safetensors file (bad header); download it "
            "again or give another checkpoint"
        )


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte header length and a JSON header."""
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        size = int.from_bytes(head, "little")
        if not 2 <= size <= SAFETENSORS_MAGIC_MAX_HEADER:
            return False
        return f.read(1) == b"{"


def check_writable(folder: Path, key: str, hint: str) -> None:
    """The folder exists or can be made, and a file can be written in it."""
    blocking = _file_in_the_way(folder)
    if blocking is not None:
        raise ConfigError(f"{key}: {folder} cannot be a folder: {blocking} is a file; {hint}")
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        _probe(folder)
    except OSError as err:
        raise ConfigError(f"{key}: cannot write in {folder} ({err.strerror}); {hint}") from None
    finally:  # a check leaves no trace: the folders are made by what writes into them
        for created in made:
            with suppress(OSError):
                created.rmdir()


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest existing one of `folder` and its parents, when it is not a folder (one
    stat each: another process may make or remove folders meanwhile)."""
    for place in (folder, *folder.parents):
        try:
            mode = place.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):  # a parent is missing or a file
            continue
        return None if stat.S_ISDIR(mode) else place
    return None


def _probe(folder: Path, attempts: int = 5) -> None:
    """Write and remove a file in `folder`. Two processes started together on one sweep
    folder check it at once: the other's clean-up may remove the folder between our mkdir
    and our file, so a vanished folder is made again rather than reported."""
    for attempt in range(attempts):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-test-")
        except (FileNotFoundError, FileExistsError):  # removed while we made or used it
            if attempt == attempts - 1:
                raise
            continue
        os.close(fd)
        os.unlink(probe)
        return


class OutputPlaceCheck(Callback):
    """Hydra callback (conf/train.yaml hydra.callbacks): the run or sweep folder is checked
    before Hydra creates it, so a read-only place is one `error:` line, not Hydra's trace."""

    def on_run_start(self, config, **kwargs) -> None:
        self._check(Path(config.hydra.run.dir), "hydra.run.dir")

    def on_multirun_start(self, config, **kwargs) -> None:
        self._check(Path(config.hydra.sweep.dir), "hydra.sweep.dir")

    @staticmethod
    def _check(folder: Path, key: str) -> None:
        try:
            check_writable(folder, key, f"choose another {key}")
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(1) from None
