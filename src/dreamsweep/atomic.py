"""The one way DreamSweep writes a file or a folder: readers see the old one or the new one,
never half of one, and a crash keeps the last complete state.

A file is written to a hidden temporary file beside it, flushed to disk and renamed over it. A
folder is built in a hidden staging folder beside it and swapped in (Linux renameat2 exchanges
the two in one step). Both get the permissions of a plain open() (`SHARED_MODE`), not the 0600
of a temporary file, so other users of a shared cache or sweep folder can read them. Run files,
cache entries, tensors, exports, reports and the toy world's assets are all written here.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it
SHARED_MODE = 0o666 & ~UMASK  # what open() gives a new file: every file a run or cache writes


def write_with(path: Path, save: Callable[[Path], object]) -> Path:
    """Let ``save`` write a temporary file beside ``path`` (torch.save, safetensors, PIL take a
    path), then give it the shared mode, flush it to disk and rename it over ``path``. On any
    failure the temporary file goes and ``path`` keeps its old content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        save(tmp)
        os.chmod(tmp, SHARED_MODE)
        with open(tmp, "rb") as written:  # a crash right after the rename keeps the new file
            os.fsync(written.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data: Any) -> Path:
    """Indented, keys sorted, one newline at the end: the JSON files of runs and sweeps."""
    return write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """Build the folder that replaces ``out``: the block fills the staging folder it is given,
    which is swapped in whole when the block ends, and removed when the block raises."""
    tmp = staging_folder(out)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_folder(tmp, out)


def swap_folder(new: Path, out: Path) -> Path:
    """Replace folder ``out`` by the complete folder ``new`` (built beside it): the two are
    exchanged in one step where the filesystem can (Linux renameat2), so a complete ``out`` is
    on disk at every moment; the old one, now at ``new``'s name, is removed last. Elsewhere
    the old one is moved aside first, and `recover_swap` puts it back if a kill falls between."""
    if out.exists() and _exchange(new, out):
        shutil.rmtree(new, ignore_errors=True)
        return out
    old = _aside(out)
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.rename(old)
    new.rename(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def recover_swap(out: Path) -> None:
    """After a kill inside `swap_folder`'s two renames: the old ``out`` is back in its place."""
    old = _aside(out)
    if old.is_dir() and not out.exists():
        old.rename(out)


def _aside(out: Path) -> Path:
    return out.with_name(f".{out.name}.old")


_LIBC = ctypes.CDLL(None, use_errno=True)
_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically; False where the system or filesystem cannot."""
    renameat2 = getattr(_LIBC, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


_STAGING = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)@(?P<host>[^@/]+)\.tmp$")


def staging_folder(out: Path) -> Path:
    """A new hidden folder beside ``out`` to build it in before `swap_folder`. Leftovers of
    writers killed in the same folder (their process is gone) are removed first, and a swap
    that a kill cut in two is put back; the folders of live processes, or of other hosts, stay."""
    parent = out.parent
    if parent.is_dir():
        for leftover in parent.glob(".*.tmp"):
            match = _STAGING.match(leftover.name)
            who = match and {"host": match["host"], "pid": int(match["pid"])}
            if leftover.is_dir() and (who is None or alive(who) is False):
                shutil.rmtree(leftover, ignore_errors=True)
        for old in parent.glob(".*.old"):
            recover_swap(parent / old.name[1 : -len(".old")])
            shutil.rmtree(old, ignore_errors=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}@{socket.gethostname()}.tmp")
    tmp.mkdir(parents=True)
    return tmp


def owner() -> dict[str, Any]:
    """Who writes (a staging folder, a run, a trial): a reader on the same host can check that
    it is alive."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def alive(who: dict[str, Any] | None) -> bool | None:
    """Whether the owner process still runs; None when that cannot be told (another host)."""
    if not who or who.get("host") != socket.gethostname():
        return None
    try:
        os.kill(int(who["pid"]), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, KeyError, TypeError, ValueError):
        return True
    return True
