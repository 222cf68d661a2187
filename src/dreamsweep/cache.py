"""The shared, content-addressed cache: work done once and reused by every run of a sweep.

An entry is a folder `<root>/<kind>/<key>` where key is a hash of what the content was made
from (`spec.json` beside it says what). Writers hold the entry's file lock, so concurrent
runs serialise on one entry; files are written to a temp name and renamed, so a reader never
sees a half-written file, and an entry that is complete is read without the lock (another user
of a shared cache may read it without being able to write its lock file). Used for generated
class images, VAE latents, base-model samples and reference features.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock

from dreamsweep import atomic
from dreamsweep.atomic import SHARED_MODE


def cache_key(kind: str, spec: dict[str, Any]) -> str:
    canonical = json.dumps({"kind": kind, **spec}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def entry_dir(root: Path, kind: str, spec: dict[str, Any]) -> Path:
    return Path(root) / kind / cache_key(kind, spec)


@contextmanager
def locked(entry: Path) -> Iterator[Path]:
    """Hold the entry's lock (the folder is created); other entries stay independent."""
    entry.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock", mode=SHARED_MODE):  # lockable by whoever may write
        yield entry


def write_spec(entry: Path, spec: dict[str, Any]) -> None:
    atomic.write_json(entry / "spec.json", spec)
