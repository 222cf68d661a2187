"""The run folder contract: where each file of a run lives, and the one place that writes them.

A run folder holds `config.yaml` (resolved settings), `metrics.jsonl` (one JSON object per
line: training losses, later evaluation cells), `result.json` (state, final step, error,
objective), `checkpoints/`, `model/` (final diffusers pipeline) and `wandb/`.
Every file is written atomically (temp file + rename), so a killed run never leaves half a file.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNING, COMPLETE, FAILED, PRUNED = "running", "complete", "failed", "pruned"
STALE = "stale"  # result.json says running, but the process that wrote it is gone
EXIT_STORAGE_ERROR = 3  # worker exit code: a full disk or unwritable place, its line printed


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def result(self) -> Path:
        return self.root / "result.json"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def model(self) -> Path:
        return self.root / "model"


STEP_DIR = re.compile(r"^step_(\d+)$")


def checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (`checkpoints/step_<n>/`), oldest first."""
    if not root.exists():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))]
    return sorted(found)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once: os.umask can only be read by setting it
SHARED_MODE = 0o666 & ~UMASK  # what open() gives a new file: every file a run or cache writes


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the new one, never a partial one,
    and a crash right after leaves the new one on disk (fsync before the rename). The file
    gets the permissions of a plain open() (mkstemp's 0600 would lock other users of a shared
    cache or sweep folder out). The one atomic write of the package: run files and cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, SHARED_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def swap_in(new: Path, out: Path) -> Path:
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
    """After a kill inside `swap_in`'s two renames: the old ``out`` is back in its place."""
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
    """A new hidden folder beside ``out`` to build it in before `swap_in`. Leftovers of
    exports or reports killed in the same folder (their process is gone) are removed first;
    those of live processes, or of other hosts, stay."""
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


def write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def owner() -> dict[str, Any]:
    """Who writes a run or runs a trial: a reader on the same host can check it is alive."""
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


def run_state(result: dict[str, Any] | None) -> str:
    """The state to show: a `running` run whose process is gone (killed) is `stale`."""
    state = (result or {}).get("state", "unknown")
    if state == RUNNING and alive(result.get("owner")) is False:
        return STALE
    return state


STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES}
_STORAGE_TEXT = ("No space left", "StorageFull", "file write failed", "Read-only file system")
RUN_RESUMES = "the run resumes from its last complete checkpoint"
PROBE_BYTES = 1 << 20


def storage_error(err: BaseException, where: Path, then: str = RUN_RESUMES) -> str | None:
    """A one-line message when ``err`` is a full disk or an unwritable place, else None.
    Torch and safetensors wrap the OSError in their own errors, hence the text checks.
    ``then``: what rerunning the command does."""
    text = str(err)
    if not (
        (isinstance(err, OSError) and err.errno in STORAGE_ERRNOS)
        or any(t in text for t in _STORAGE_TEXT)
    ):
        return None
    try:
        existing = next(p for p in (where, *where.parents) if p.exists())
        free = f"{shutil.disk_usage(existing).free / 2**20:.0f} MB free"
    except (OSError, StopIteration):
        free = "free space unknown"
    reason = err.strerror if isinstance(err, OSError) and err.strerror else text.splitlines()[0]
    file = f" ({err.filename})" if isinstance(err, OSError) and err.filename else ""
    return (
        f"cannot write to {where}{file}: {reason[:200]} ({free}); free space or fix the "
        f"permissions and rerun the same command: {then}"
    )


def write_failure(folder: Path, err: BaseException) -> OSError | None:
    """The OSError behind a write that failed without saying why: torch's writer (torch.save,
    as Accelerate writes optimizer.bin) reports a full disk as "unexpected pos". A probe write
    in the same folder finds out (full, over quota, read-only); None when the probe succeeds.
    The error names the newest file of the folder: the one being written."""
    if isinstance(err, OSError) and err.errno is not None:
        return None
    probe = folder / ".write-probe"
    try:
        with open(probe, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    except OSError as found:
        if found.errno not in STORAGE_ERRNOS:
            return None
        files = [p for p in folder.iterdir() if p.is_file() and p != probe]
        newest = max(files, key=lambda p: p.stat().st_mtime_ns, default=folder)
        return OSError(found.errno, found.strerror, str(newest))
    finally:
        probe.unlink(missing_ok=True)
    return None


def write_result(paths: RunPaths, state: str, **fields: Any) -> dict[str, Any]:
    """Update result.json, keeping fields written earlier (e.g. the objective)."""
    result = read_json(paths.result) or {}
    result.update(fields, state=state, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_json(paths.result, result)
    return result


def update_result(paths: RunPaths, **fields: Any) -> dict[str, Any]:
    """Add fields to result.json without changing the run's state (e.g. links to a tracker)."""
    state = (read_json(paths.result) or {}).get("state", RUNNING)
    return write_result(paths, state, **fields)


def append_metrics(paths: RunPaths, record: dict[str, Any]) -> None:
    """Append one JSON line; a line is small, so one write() call keeps it whole."""
    with paths.metrics.open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


@dataclass
class MetricsFile:
    records: list[dict[str, Any]]  # the complete records, in order
    torn: list[tuple[int, str]]  # (line number, text) of lines that are not a JSON object


def scan_metrics(paths: RunPaths) -> MetricsFile:
    """The records of metrics.jsonl and the lines that could not be read (a kill leaves a torn
    last line; a damaged file, others)."""
    found = MetricsFile([], [])
    if not paths.metrics.exists():
        return found
    text = paths.metrics.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            found.records.append(record)
        elif line.strip():
            found.torn.append((number, line))
    return found


def read_metrics(paths: RunPaths) -> list[dict[str, Any]]:
    """All complete records (a torn last line from a killed process is ignored)."""
    return scan_metrics(paths).records


def truncate_metrics_after(paths: RunPaths, step: int) -> None:
    """On resume, drop training records logged after the checkpoint we restart from."""
    records = [r for r in read_metrics(paths) if r.get("step", 0) <= step]
    atomic_write_text(paths.metrics, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
