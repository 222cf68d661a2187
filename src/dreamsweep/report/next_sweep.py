"""What to try next: a sweep preset proposed from a finished sweep's evidence.

`dreamsweep next <sweep or run folder>` reads the sweep (its runs, the paired verdicts of
report/best.py, the Optuna trials) and the preset it ran (multirun.yaml: the preset's params and
the command line), and proposes one change per finding, each with its evidence in one line:
- the best learning rate at the edge of the searched range -> the range extended past that edge;
- the best step the last one evaluated, the curve still rising -> more steps;
- top cells the data cannot separate -> more seeds (the number the paired variance asks for);
- a swept setting whose other values all lost clearly (paired) -> fixed at the winner;
- an Optuna search -> each searched interval narrowed around the top trials.
The proposal is a preset like those in sweeps/: the original preset with these changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dreamsweep.report.best import BestCard, best_card
from dreamsweep.report.collect import Sweep, collect
from dreamsweep.report.findings import SettingEffect, setting_effects

LR = "optim.lr"
STEPS = "train.max_steps"
MAX_SEEDS = 256  # more seeds per prompt than this is rarely worth the sampling time
TOP_SHARE = 0.25  # the share of complete trials an Optuna interval is narrowed around


@dataclass
class Plan:
    """The sweep that ran (preset name, its params, fixed command-line overrides)."""

    preset: str | None
    params: dict[str, str]  # key -> Hydra sweep syntax ("1e-4,3e-4", "tag(log, interval(...))")
    fixed: dict[str, str]  # key -> value given on the command line
    conf_dir: Path | None  # the config folder the sweep was composed from
    proposals: list[tuple[str, str]] = field(default_factory=list)  # (change, evidence)


def read_plan(sweep: Sweep) -> Plan:
    """The preset and overrides of a sweep (multirun.yaml), or of a single run."""
    multirun = sweep.root / "multirun.yaml"
    if multirun.exists():
        hydra = yaml.safe_load(multirun.read_text(encoding="utf-8"))["hydra"]
        params = {k: str(v) for k, v in (hydra["sweeper"].get("params") or {}).items()}
        task = list(hydra["overrides"]["task"])
        sources = hydra["runtime"]["config_sources"]
    else:
        run = sweep.runs[0]
        params, task = {}, list(run.overrides)
        hydra_file = run.path / ".hydra" / "hydra.yaml"
        sources = (
            yaml.safe_load(hydra_file.read_text())["hydra"]["runtime"]["config_sources"]
            if hydra_file.exists()
            else []
        )
    conf = next((s["path"] for s in sources if s.get("provider") == "main"), None)
    preset, fixed = None, {}
    for line in task:
        key, _, value = line.partition("=")
        if key.lstrip("+") == "sweep":
            preset = value
        elif key.startswith(("hydra.", "optuna.", "run_name")):
            continue
        elif _is_sweep(value):
            params[key.lstrip("+")] = value
            fixed.pop(key, None)
        else:
            fixed[key] = value
            params.pop(key.lstrip("+"), None)
    return Plan(preset, params, fixed, Path(conf) if conf else None)


def _is_sweep(value: str) -> bool:
    return (
        "," in value
        and not value.startswith("[")
        or value.startswith(("choice(", "range(", "interval(", "tag("))
    )


def propose(
    sweep: Sweep, best: BestCard | None = None, effects: list[SettingEffect] | None = None
) -> Plan:
    """The next sweep: the plan that ran, with one change per finding (``best`` and
    ``effects``: the report's, when it has them already)."""
    plan = read_plan(sweep)
    best = best or best_card(sweep)
    if best is None:
        return plan
    _learning_rate_edge(sweep, best, plan)
    _more_steps(best, plan)
    _fix_losers(sweep, plan, setting_effects(sweep) if effects is None else effects)
    _narrow_search(sweep, plan)
    _more_seeds(best, plan)
    return plan


def _numbers(text: str) -> list[float] | None:
    try:
        return sorted(float(v) for v in text.split(","))
    except ValueError:
        return None


def _learning_rate_edge(sweep: Sweep, best: BestCard, plan: Plan) -> None:
    values = _numbers(plan.params.get(LR, ""))
    lr = best.run.setting(LR)
    if not values or len(values) < 2 or lr is None:
        return
    ratio = values[-1] / values[-2] if float(lr) == values[-1] else values[1] / values[0]
    if float(lr) == values[-1]:
        new, side = [lr, lr * ratio, lr * ratio**2], "upper"
    elif float(lr) == values[0]:
        new, side = [lr / ratio**2, lr / ratio, lr], "lower"
    else:
        return
    plan.params[LR] = ",".join(f"{v:.3g}" for v in new)
    plan.proposals.append(
        (
            f"{LR}: {plan.params[LR]}",
            f"the best cell's learning rate {lr:g} is the {side} edge of the searched "
            f"{','.join(f'{v:g}' for v in values)}: extend past it",
        )
    )


def _more_steps(best: BestCard, plan: Plan) -> None:
    row = best.row
    curve = [(s, c) for s, c in best.run.curve(row.sampling, row.weights).items() if s > 0]
    if len(curve) < 2 or row.step != curve[-1][0]:
        return
    previous = curve[-2][1]
    if previous.objective is None or row.objective <= previous.objective:
        return
    last = row.step
    steps = _numbers(plan.params.get(STEPS, "")) or []
    more = [int(s) for s in steps if s >= last] + [2 * last, 4 * last]
    plan.params[STEPS] = ",".join(str(s) for s in sorted(set(more)))
    plan.fixed.pop(STEPS, None)
    plan.proposals.append(
        (
            f"{STEPS}: {plan.params[STEPS]}",
            f"the best cell is at the last step evaluated ({last}) and the objective was still "
            f"rising ({previous.objective:.3f} at step {previous.step}, {row.objective:.3f} at "
            f"{last})",
        )
    )


def _fix_losers(sweep: Sweep, plan: Plan, effects: list[SettingEffect]) -> None:
    for key in sweep.varying:
        mine = [e for e in effects if e.key == key]
        if key in (LR, STEPS) or key not in plan.params or len(mine) < 2:
            continue
        if all(e.verdict == "worse" for e in mine[1:]):
            winner = mine[0].value
            del plan.params[key]
            plan.fixed[key] = winner
            others = ", ".join(f"{e.value} [{e.gap.low:.3f}, {e.gap.high:.3f}]" for e in mine[1:])
            plan.proposals.append(
                (
                    f"{key}={winner} (fixed)",
                    f"every other value lost clearly to {winner} (gap, 95% interval: {others})",
                )
            )


def _narrow_search(sweep: Sweep, plan: Plan) -> None:
    study = sweep.study
    if study is None:
        return
    done = [t for t in study.trials if t.state == "complete" and t.values]
    if len(done) < 3:
        return
    sign = -1 if study.directions and study.directions[0] == "maximize" else 1
    done.sort(key=lambda t: sign * t.values[0])
    top = done[: max(2, math.ceil(TOP_SHARE * len(done)))]
    for key in study.continuous:
        values = [float(t.params[key]) for t in top if key in t.params]
        if not values or key not in plan.params:
            continue
        low, high = min(values), max(values)
        log = "log" in plan.params[key]
        low, high = (low / 1.5, high * 1.5) if log else (low - 0.1 * (high - low), high)
        interval = f"interval({low:.3g}, {high:.3g})"
        plan.params[key] = f"tag(log, {interval})" if log else interval
        plan.proposals.append(
            (
                f"{key}: {plan.params[key]}",
                f"the top {len(top)} of {len(done)} complete trials have {key} in "
                f"[{min(values):.3g}, {max(values):.3g}]",
            )
        )


def _more_seeds(best: BestCard, plan: Plan) -> None:
    if best.seeds_needed is None or not best.inseparable:
        return
    seeds = min(best.seeds_needed, MAX_SEEDS)
    plan.fixed["eval.seeds"] = f"${{range:{seeds}}}"
    rival = best.contenders[0]
    plan.proposals.append(
        (
            f"eval.seeds=${{range:{seeds}}}",
            f"the top two cells are within noise (gap {rival.gap.estimate:.3f} "
            f"[{rival.gap.low:.3f}, {rival.gap.high:.3f}]); about {best.seeds_needed} seeds "
            "per prompt would separate them",
        )
    )


def preset_text(plan: Plan, name: str, source: Path) -> str:
    """The proposed preset: the original one (or an empty grid) with the plan's changes."""
    original = _original_preset(plan)
    preset = dict(original) if original else {"defaults": [{"override /hydra/sweeper": "grid"}]}
    preset["sweep_name"] = name
    defaults = list(preset.get("defaults") or [])
    for key, value in plan.fixed.items():
        bare = key.lstrip("+~")
        if plan.conf_dir is not None and (plan.conf_dir / bare).is_dir():
            defaults.append({f"override /{bare}": value})  # a config group choice
        else:
            _set(preset, bare, _typed(value))
    preset["defaults"] = defaults
    sweeper = preset.setdefault("hydra", {}).setdefault("sweeper", {})
    sweeper["params"] = dict(plan.params)
    lines = [
        "# @package _global_",
        f"# Proposed by `dreamsweep next {source}` from what that sweep found:",
        *(f"# - {change}: {evidence}." for change, evidence in plan.proposals),
        f"#   python train.py -m +sweep={name}",
    ]
    if not plan.proposals:
        lines.insert(2, "# - nothing to change: the evidence asks for no other sweep.")
    return "\n".join(lines) + "\n" + yaml.safe_dump(preset, sort_keys=False, width=100)


def _typed(text: str) -> Any:
    """A command-line value as Hydra reads it (1e-5 is a float there, a string in YAML 1.1)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text if text.startswith("$") else yaml.safe_load(text)


def _original_preset(plan: Plan) -> dict[str, Any] | None:
    if plan.preset is None or plan.conf_dir is None:
        return None
    file = plan.conf_dir / "sweep" / f"{plan.preset}.yaml"
    return yaml.safe_load(file.read_text(encoding="utf-8")) if file.exists() else None


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {})
    tree[leaf] = value


def next_sweep(folder: Path, out: Path | None) -> tuple[str, Path | None, Plan]:
    """(preset text, where it was written or None for stdout, the plan)."""
    sweep = collect(folder)
    plan = propose(sweep)
    name = f"next-{plan.preset or sweep.name}"
    if out is not None and str(out) != "-":
        name = out.stem
    elif out is None and plan.conf_dir is not None:
        out = plan.conf_dir / "sweep" / f"{name}.yaml"
        for n in range(2, 100):
            if not out.exists():
                break
            out = out.with_name(f"{name}-{n}.yaml")
        name = out.stem
    text = preset_text(plan, name, folder)
    if out is not None and str(out) != "-":
        out.write_text(text, encoding="utf-8")
        return text, out, plan
    return text, None, plan


def summary(plan: Plan) -> list[str]:
    """One line per proposal, for the report's "What to try next"."""
    return [f"{change} — {evidence}" for change, evidence in plan.proposals]
