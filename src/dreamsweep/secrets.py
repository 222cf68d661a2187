"""Storage URLs without their passwords in anything we print or write.

An Optuna storage URL such as `postgresql+psycopg://user:pass@host/db` reaches the runs of a
sweep masked (`user:***@host`): that is what config.yaml, result.json, the logs and reports
hold. The real URL travels only in the environment (DREAMSWEEP_OPTUNA_STORAGE), set by the
sweeper for its jobs or by the user, and `real_storage` swaps it back in where a connection
is made. Settings copied into weights' metadata and W&B never include the `optuna` section.

Hydra's own files of a sweep (each job's `.hydra/*.yaml`, a launcher's pickled job) are written
from the sweep's config; `mask_sweep_config` masks the URL there before the first job starts,
so no file holds the password at any moment, whatever way the sweep ends.
"""

from __future__ import annotations

import os
import re
from typing import Any

STORAGE_ENV = "DREAMSWEEP_OPTUNA_STORAGE"
MASK = "***"
_PASSWORD = re.compile(r"(?P<head>://[^:/@\s]*:)(?P<password>[^@\s]*)(?P<tail>@)")


def mask_url(url: str | None) -> str | None:
    """The URL with its password replaced by ***; other text is returned as it is."""
    if url is None:
        return None
    return _PASSWORD.sub(lambda m: f"{m['head']}{MASK}{m['tail']}", str(url))


def password_of(url: str | None) -> str | None:
    match = _PASSWORD.search(str(url or ""))
    return match["password"] if match and match["password"] != MASK else None


STORAGE_KEY = "hydra.sweeper.storage"


def mask_sweep_config(config: Any) -> None:
    """Mask the storage password in a sweep's Hydra config, in place (the sweeper keeps the
    real URL it was built with). Jobs are recomposed from `hydra.overrides.hydra`, so those are
    masked too, and a URL that came from a config file is overridden by its masked form."""
    from omegaconf import open_dict, read_write

    storage = config.hydra.sweeper.get("storage")
    if not password_of(storage):
        return
    shown = mask_url(storage)
    with read_write(config.hydra), open_dict(config.hydra):
        config.hydra.sweeper.storage = shown
        overrides = [mask_url(str(o)) for o in config.hydra.overrides.hydra]
        if not any(o.lstrip("+~").startswith(f"{STORAGE_KEY}=") for o in overrides):
            overrides.append(f"{STORAGE_KEY}='{shown}'")
        config.hydra.overrides.hydra = overrides


def real_storage(url: str) -> str:
    """The URL to connect with: a masked URL is replaced by DREAMSWEEP_OPTUNA_STORAGE when that
    is the same URL with its password."""
    if MASK not in url:
        return url
    real = os.environ.get(STORAGE_ENV)
    if real and mask_url(real) == url:
        return real
    raise ValueError(
        f"the Optuna storage {url} has a masked password: set {STORAGE_ENV} to the full URL"
    )
