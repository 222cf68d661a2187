"""The run folder contract: where each file of a run lives, and the readers and writers of them.

A run folder holds `config.yaml` (resolved settings), `metrics.jsonl` (one JSON object per
line: training losses, later evaluation cells), `result.json` (state, final step, error,
objective), `checkpoints/step_<n>/`, `eval/step_<n>/<cell>/` (one scored cell's images, contact
sheet and scores.json), `model/` (final diffusers pipeline) and `wandb/`. The layout of the
step and cell folders is spelled only here: the rest of the package asks for paths (`cell_dir`,
`sample_file`, ...) and for the step and cell a name stands for (`parse_cell_key`).
Every file is written through `dreamsweep.atomic`, so a killed run never leaves half a file.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dreamsweep import atomic
from dreamsweep.atomic import alive

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


def step_name(step: int) -> str:
    """`step_<n>`: the folder of a checkpoint (under `checkpoints/`) or evaluation (`eval/`)."""
    return f"step_{step:06d}"


def step_folder(parent: Path, step: int) -> Path:
    return parent / step_name(step)


def checkpoint_dirs(root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints (`checkpoints/step_<n>/`), oldest first."""
    if not root.exists():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := STEP_DIR.match(p.name))]
    return sorted(found)


# One scored cell: `eval/step_<n>/<cell>/` holds a PNG per sample (prompt index, seed), the
# class-prompt samples, the contact sheet and scores.json.
def cell_dir(run_dir: Path, step: int, cell: str) -> Path:
    return step_folder(Path(run_dir) / "eval", step) / cell


def cell_key(step: int, cell: str) -> str:
    """How a cell is named inside a run (`step_<n>/<cell>`: `dreamsweep export --cell`, plans)."""
    return f"{step_name(step)}/{cell}"


def parse_cell_key(key: str) -> tuple[int, str] | None:
    """(step, cell) of `step_<n>/<cell>`; None when ``key`` is not one."""
    step, _, cell = key.strip("/").partition("/")
    match = STEP_DIR.match(step)
    return (int(match.group(1)), cell) if match and cell and "/" not in cell else None


def sample_name(prompt_index: int, seed: int) -> str:
    """The file of one sample in a cell folder (also how the report's gallery names copies)."""
    return f"p{prompt_index:02d}_s{seed}.png"


def sample_file(cell_folder: Path, prompt_index: int, seed: int) -> Path:
    return cell_folder / sample_name(prompt_index, seed)


def class_sample_file(cell_folder: Path, seed: int) -> Path:
    return cell_folder / f"class_s{seed}.png"


def grid_file(cell_folder: Path) -> Path:
    """The contact sheet: a row per prompt, seeds across, the class-prompt samples last."""
    return cell_folder / "grid.png"


def scores_file(cell_folder: Path) -> Path:
    return cell_folder / "scores.json"


def read_cell_scores(run_dir: Path, step: int, cell: str) -> dict[str, Any]:
    """A cell's scores.json (per prompt, per sample); empty when it was never written."""
    return read_json(scores_file(cell_dir(run_dir, step, cell))) or {}


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


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
    atomic.write_json(paths.result, result)
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
    atomic.write_text(paths.metrics, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records))
