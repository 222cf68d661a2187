"""Read a sweep (or one run) from its run folders and Optuna storage into one table of cells.

Only the run-folder contract (config.yaml, metrics.jsonl, result.json, eval/ cells, Hydra's
.hydra/overrides.yaml) and the Optuna storage are read; never W&B. A run that failed, was
pruned or is still running is kept with its state, never silently dropped. A file that cannot
be read (a corrupt result.json, a torn line of metrics.jsonl) is skipped and listed, with
what it cost (`Skipped`); the rest of the sweep is read as usual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from dreamsweep import verdicts
from dreamsweep.cells import Cell
from dreamsweep.config import ConfigError, RunConfig, load_saved_config
from dreamsweep.metrics.objective import rank_key
from dreamsweep.runs import (
    STALE,
    RunPaths,
    cell_dir,
    run_state,
    sample_file,
    scan_metrics,
    scores_file,
)
from dreamsweep.verdicts import CellSamples

UNREADABLE = "unreadable"  # the state of a run whose result.json cannot be read


@dataclass
class CellRow:
    """One scored cell of a run (the cell itself is cells.Cell: step, sampling, weights)."""

    run: str
    spec: Cell
    objective: float | None
    scores: dict[str, float | None]  # eval/<score> without the prefix
    per_prompt: dict[str, list[float]]  # from the scores file: each score per prompt
    prompts: list[str]
    seeds: list[int]
    folder: Path | None  # the cell's folder (runs.cell_dir) when its images are there
    samples: CellSamples | None = None  # per-sample scores: what verdicts pair and resample

    @property
    def step(self) -> int:
        return self.spec.step

    @property
    def cell(self) -> str:
        return self.spec.name

    @property
    def sampling(self) -> str:
        """The sampling setting without the weights: what a step-0 baseline shares."""
        return self.spec.sampling.name

    @property
    def scheduler(self) -> str:
        return self.spec.sampling.scheduler

    @property
    def num_inference_steps(self) -> int:
        return self.spec.sampling.num_inference_steps

    @property
    def guidance_scale(self) -> float:
        return self.spec.sampling.guidance_scale

    @property
    def weights(self) -> str:  # base (step 0), ema or raw
        return self.spec.weights

    @cached_property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """95% bootstrap intervals (verdicts.py) of the objective (key "objective") and of
        every per-sample score; empty for a cell scored before samples were kept."""
        if self.samples is None:
            return {}
        out = verdicts.score_intervals(self.samples)
        objective = verdicts.interval(self.samples)
        return {**out, "objective": objective} if objective else out

    def image(self, prompt_index: int, seed: int) -> Path | None:
        if self.folder is None:
            return None
        path = sample_file(self.folder, prompt_index, seed)
        return path if path.exists() else None


@dataclass
class Skipped:
    """Part of a run the report could not read and left out."""

    run: str
    file: str  # inside the run folder: result.json, metrics.jsonl, a cell's scores file
    what: str  # what was skipped, and what is missing because of it
    lines: int = 0  # lines of metrics.jsonl skipped
    cells: int = 0  # scored cells (metrics.jsonl eval lines) among them

    def __str__(self) -> str:
        return f"{self.run}/{self.file}: {self.what}"


@dataclass
class Run:
    name: str  # folder name inside the sweep
    path: Path
    state: str  # complete | pruned | failed | running | stale | unknown
    config: dict[str, Any]
    overrides: list[str]  # what the command line and the sweep set (Hydra's overrides.yaml)
    result: dict[str, Any]
    cells: list[CellRow]
    val: list[dict[str, Any]] = field(default_factory=list)  # metrics.jsonl kind=val lines
    skipped: list[Skipped] = field(default_factory=list)  # what of it could not be read

    @property
    def final_step(self) -> int | None:
        return self.result.get("final_step")

    @property
    def best_cell(self) -> CellRow | None:
        """The run's best trained cell (step 0 is the base model), by the one tie rule."""
        scored = [c for c in self.cells if c.step > 0 and c.objective is not None]
        return min(scored, key=lambda c: rank_key(c.objective, c.step, 0, c.cell), default=None)

    @property
    def best_objective(self) -> float | None:
        return self.best_cell.objective if self.best_cell else None

    def curve(self, sampling: str, weights: str) -> dict[int, CellRow]:
        """Step -> cell under one sampling setting and weights; step 0 is the base model's cell
        under the same sampling setting, the start of every curve."""
        return {
            c.step: c
            for c in sorted(self.cells, key=lambda c: c.step)
            if c.sampling == sampling and (c.weights == weights or c.step == 0)
        }

    def objective_settings(self) -> tuple[str, float]:
        """(metrics.objective, metrics.drift_penalty) the run was scored with."""
        return self.setting("metrics.objective"), self.setting("metrics.drift_penalty")

    @property
    def error(self) -> str | None:
        unread = "; ".join(f"{k.file}: {k.what}" for k in self.skipped)
        return self.result.get("error") or self.result.get("pruned") or unread or None

    @cached_property
    def defaults(self) -> dict[str, Any] | None:
        """The settings a run gets without overrides, composed from the conf/ folder the run was
        started with; None when that folder is gone (or Hydra is busy in this process)."""
        hydra_file = self.path / ".hydra" / "hydra.yaml"
        try:
            hydra = yaml.safe_load(hydra_file.read_text())["hydra"]
            sources = hydra["runtime"]["config_sources"]
        except (OSError, yaml.YAMLError, KeyError, TypeError):  # none, or not Hydra's
            return None
        conf = next((s["path"] for s in sources if s.get("provider") == "main"), None)
        if conf is None or not Path(conf).is_dir():
            return None
        from hydra import compose, initialize_config_dir

        from dreamsweep.config import load_config, to_dict

        try:
            with initialize_config_dir(config_dir=conf, version_base="1.3"):
                return to_dict(load_config(compose(config_name="train"), check_machine=False))
        except Exception:  # conf/ changed since the run, or Hydra is busy in this process
            return None

    @cached_property
    def settings(self) -> RunConfig:
        """The run's config.yaml as typed settings (`config.load_saved_config`); a key that an
        older version did not write takes its value from `defaults`. ConfigError, naming the
        file, when the run has no readable config.yaml or it does not load."""
        file = RunPaths(self.path).config
        if not self.config:
            raise ConfigError(f"{file}: missing or unreadable, so the run's settings are unknown")
        try:
            return load_saved_config(self.config)
        except ConfigError as err:
            if self.defaults is None:
                raise ConfigError(f"{file}: {err}") from None
        try:  # written by an older version: conf/ composed (a second or so) fills the gaps
            return load_saved_config(self.config, self.defaults)
        except ConfigError as err:
            raise ConfigError(f"{file}: {err}") from None

    def setting(self, dotted: str) -> Any:
        """A setting of the run; from its overrides when it never wrote config.yaml."""
        if not self.config:
            given = dict(o.lstrip("+~").split("=", 1) for o in self.overrides if "=" in o)
            return given.get(dotted)
        value: Any = self.config
        for part in dotted.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return value


@dataclass
class Trial:
    number: int
    state: str  # complete | pruned | fail | running | waiting
    values: list[float] | None
    params: dict[str, Any]
    intermediate: dict[int, float]
    run_dir: str | None
    interval: list[float] | None = None  # 95% bootstrap interval of the best cell's objective


@dataclass
class Study:
    name: str
    storage: str
    directions: list[str]
    trials: list[Trial]
    continuous: list[str] = field(default_factory=list)  # params searched over a range
    optuna_study: Any = None  # the loaded optuna.Study, for Optuna's own plots


@dataclass
class Sweep:
    root: Path
    name: str  # the sweep_name of its runs, or "run"
    runs: list[Run]
    study: Study | None
    notes: list[str] = field(default_factory=list)  # what could not be read, and why

    @property
    def cells(self) -> list[CellRow]:
        return [c for r in self.runs for c in r.cells]

    @property
    def skipped(self) -> list[Skipped]:
        return [k for r in self.runs for k in r.skipped]

    def skipped_summary(self) -> str:
        """The count of what was left out, for the top of the page ("" when nothing was)."""
        skipped = self.skipped
        if not skipped:
            return ""
        lines, cells = sum(k.lines for k in skipped), sum(k.cells for k in skipped)
        files = sum(not k.lines for k in skipped)
        runs = len({k.run for k in skipped})
        return (
            f"skipped while reading {runs} run(s): {lines} unreadable line(s) of metrics.jsonl "
            f"({cells} of them scored cells) and {files} unreadable file(s); see the notes"
        )

    def run(self, name: str) -> Run:
        return next(r for r in self.runs if r.name == name)

    @cached_property
    def varying(self) -> list[str]:
        """The settings (dotted keys) whose values differ between the runs: the training axes."""
        flat = [flatten(r.config) for r in self.runs if r.config]
        keys = sorted({k for f in flat for k in f if not k.startswith(RUN_SPECIFIC)})
        return [k for k in keys if len({repr(f.get(k)) for f in flat}) > 1]

    def label(self, run: Run) -> str:
        """A run named by what sets it apart: `optim.lr=0.001 prior.enabled=false`."""
        varying = self.varying
        if not varying:
            return run.name
        return " ".join(f"{k}={format_value(run.setting(k))}" for k in varying)


RUN_SPECIFIC = ("optuna.", "run_name", "cache_dir", "launcher.threads")  # not settings


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"lr": 1e-3}} -> {"optim.lr": 1e-3}; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def format_value(value: Any) -> str:
    """A setting as one would type it in an override: true, 0.001, [ddim,pndm]."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ",".join(map(format_value, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def is_run_folder(path: Path) -> bool:
    """A run's folder, or a sweep job's that died before writing anything but Hydra's files."""
    paths = RunPaths(path)
    return any(p.exists() for p in (paths.config, paths.result, path / ".hydra" / "overrides.yaml"))


def collect(folder: Path) -> Sweep:
    """A sweep folder (runs in sub-folders) or a single run folder."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (give a sweep or a run folder)")
    if is_run_folder(folder):
        run_dirs = [folder]
    else:
        run_dirs = sorted(
            (p for p in folder.iterdir() if p.is_dir() and is_run_folder(p)), key=_natural
        )
    if not run_dirs:
        raise FileNotFoundError(
            f"{folder}: no run folders (a run folder holds config.yaml and result.json; "
            "a sweep folder holds run folders 0/, 1/, ...)"
        )
    notes: list[str] = []
    runs = [read_run(p.resolve(), notes) for p in run_dirs]  # absolute: the report links them
    study = read_study(folder, runs, notes)
    name = next((r.config.get("sweep_name") for r in runs if r.config.get("sweep_name")), None)
    return Sweep(root=folder, name=name or "run", runs=runs, study=study, notes=notes)


def read_run(path: Path, notes: list[str]) -> Run:
    paths = RunPaths(path)
    skipped: list[Skipped] = []
    config = _read_yaml(paths.config, notes) or {}
    overrides = _read_yaml(path / ".hydra" / "overrides.yaml", notes) or []
    result = _read_json(paths.result, path, skipped, "state, objective and error unknown")
    state = run_state(result) if result else "unknown"
    if state == STALE:
        notes.append(f"{path.name}: its process ended without a final state (killed, full disk)")
    if skipped:
        state = UNREADABLE
    elif not result:
        notes.append(f"{path.name}: no result.json (the job was stopped before its run started)")
    metrics = scan_metrics(paths)
    if metrics.torn:
        skipped.append(_torn_lines(path.name, metrics.torn))
    latest: dict[tuple[int, str], dict] = {}  # a re-scored cell replaces the earlier line
    val: list[dict[str, Any]] = []
    for record in metrics.records:
        if record.get("kind") == "eval":
            latest[(record["step"], record["cell"])] = record
        elif record.get("kind") == "val":
            val.append(record)
    scoring = _objective_settings(config)
    cells = [_cell_row(path, r, skipped, scoring) for _, r in sorted(latest.items())]
    notes.extend(str(k) for k in skipped)
    return Run(path.name, path, state, config, [str(o) for o in overrides], result or {}, cells,
               val, skipped)  # fmt: skip


def _objective_settings(config: dict[str, Any]) -> tuple[str, float]:
    metrics = config.get("metrics") or {}
    return metrics.get("objective", "balanced"), metrics.get("drift_penalty", 0.5)


def _torn_lines(run: str, torn: list[tuple[int, str]]) -> Skipped:
    """Lines of metrics.jsonl that are not JSON; an eval line (it starts with its cell) was
    a scored cell, which the tables and the best cell then miss."""
    cells = sum(text.startswith('{"cell"') or '"kind": "eval"' in text for _, text in torn)
    numbers = ", ".join(str(n) for n, _ in torn[:10]) + (", ..." if len(torn) > 10 else "")
    what = f"{len(torn)} unreadable line(s) skipped (line {numbers}), {cells} of them scored cells"
    return Skipped(run, "metrics.jsonl", what, lines=len(torn), cells=cells)


def _read_json(file: Path, run_dir: Path, skipped: list[Skipped], missing: str) -> dict | None:
    """A JSON object file of a run, or None; a corrupt one is listed in ``skipped``."""
    if not file.exists():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
        problem = f"not a JSON object but {type(data).__name__}"
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        problem = f"not valid JSON ({err})"
    name = str(file.relative_to(run_dir))
    skipped.append(Skipped(run_dir.name, name, f"{problem}; skipped: {missing}"))
    return None


def _cell_row(
    run_dir: Path, record: dict[str, Any], skipped: list[Skipped], scoring: tuple[str, float]
) -> CellRow:
    spec = Cell.from_record(record)
    folder = cell_dir(run_dir, spec.step, spec.name)
    saved = _read_json(scores_file(folder), run_dir, skipped, "the scores per prompt") or {}
    if saved and (saved.get("step"), saved.get("cell")) != (spec.step, spec.name):
        saved = {}  # not this cell's file
    return CellRow(
        run=run_dir.name,
        spec=spec,
        objective=record.get("objective"),
        scores={k[len("eval/") :]: v for k, v in record.items() if k.startswith("eval/")},
        per_prompt=saved.get("per_prompt", {}),
        prompts=saved.get("prompts", []),
        seeds=saved.get("seeds", []),
        folder=folder if folder.is_dir() else None,
        samples=CellSamples.from_saved(saved.get("samples"), *scoring),
    )


def read_study(folder: Path, runs: list[Run], notes: list[str]) -> Study | None:
    """The Optuna study the runs were trials of (result.json `optuna`), if one is reachable."""
    link = next((r.result["optuna"] for r in runs if r.result.get("optuna")), None)
    if link is None:
        summary = _read_yaml(folder / "optimization_results.yaml", notes)
        link = {"study": summary["study_name"], "storage": summary["storage"]} if summary else None
    if link is None:
        return None
    import optuna

    from dreamsweep.sweeps.study import storage_object

    try:
        study = optuna.load_study(study_name=link["study"], storage=storage_object(link["storage"]))
    except Exception as err:  # moved or unreachable storage: the run folders still tell a lot
        notes.append(f"Optuna study '{link['study']}' not read from {link['storage']}: {err}")
        return None
    if "grid" in study.user_attrs:  # a grid's work queue (dreamsweep enqueue), not a search:
        return None  # the report reads it as the grid it is
    frozen = study.get_trials(deepcopy=False)
    trials = [
        Trial(
            number=t.number,
            state=t.state.name.lower(),
            values=t.values,
            params=t.params,
            intermediate=dict(t.intermediate_values),
            run_dir=t.user_attrs.get("run_dir"),
            interval=t.user_attrs.get("objective_interval"),
        )
        for t in frozen
    ]
    directions = [d.name.lower() for d in study.directions]
    continuous = sorted(
        {
            name
            for t in frozen
            for name, d in t.distributions.items()
            if not isinstance(d, optuna.distributions.CategoricalDistribution)
        }
    )
    return Study(link["study"], link["storage"], directions, trials, continuous, study)


def _read_yaml(path: Path, notes: list[str]) -> Any:
    if not path.exists():
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        notes.append(f"{path}: not valid YAML ({err})")
        return None


def _natural(path: Path) -> tuple:
    """Sweep job folders 0, 1, ..., 10 in number order."""
    return (0, int(path.name), "") if path.name.isdigit() else (1, 0, path.name)
