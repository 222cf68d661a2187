"""Storage URLs without their passwords in anything we print or write.

An Optuna storage URL such as `postgresql+psycopg://user:pass@host/db` reaches the runs of a
sweep masked (`user:***@host`): that is what config.yaml, result.json, the logs and reports
hold. The real URL travels only in the environment (DREAMSWEEP_OPTUNA_STORAGE), set by the
sweeper for its jobs or by the user, and `real_storage` swaps it back in where a connection
is made. Settings copied into weights' metadata and W&B never include the `optuna` section.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dreamsweep.runs import atomic_write_text

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


def scrub_files(root: Path, password: str | None) -> None:
    """Mask a password that Hydra copied into its own files (`.hydra/*.yaml`, multirun.yaml)
    when it was given on the command line as hydra.sweeper.storage."""
    if not password:
        return
    for path in [*root.rglob(".hydra/*.yaml"), *root.glob("multirun.yaml")]:
        text = path.read_text(encoding="utf-8")
        if password in text:
            atomic_write_text(path, text.replace(password, MASK))


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
