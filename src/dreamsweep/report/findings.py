"""Plain sentences that say what a sweep found: which settings won, and whether runs overfit."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from dreamsweep.metrics.objective import PROMPT_KEYS, SUBJECT_KEYS
from dreamsweep.report.best import BestCard, candidates, describe_cell
from dreamsweep.report.collect import Sweep, format_value

MAX_VALUES = 6  # more distinct values than this: not a grid axis


@dataclass
class SettingEffect:
    """One value of a swept setting: the best objectives of the runs that had it."""

    key: str
    value: str
    runs: int
    best: float
    mean: float


def setting_effects(sweep: Sweep) -> list[SettingEffect]:
    """For each swept setting and value, the best and the mean of the runs' best objectives."""
    scored = {c.run for c in candidates(sweep)}
    effects = []
    for key in sweep.varying:
        by_value: dict[str, list[float]] = {}
        for run in sweep.runs:
            value = run.best_objective
            if run.name in scored and value is not None:
                by_value.setdefault(format_value(run.setting(key)), []).append(value)
        searched = sweep.study.continuous if sweep.study else []
        if len(by_value) > MAX_VALUES or key in searched:
            continue  # a continuous search axis: Optuna's importances tell its effect
        effects += [
            SettingEffect(key, v, len(xs), max(xs), statistics.fmean(xs))
            for v, xs in sorted(by_value.items(), key=lambda kv: -max(kv[1]))
        ]
    return effects


def findings(sweep: Sweep, best: BestCard | None) -> list[str]:
    states = {s: sum(r.state == s for r in sweep.runs) for s in {r.state for r in sweep.runs}}
    lines = [
        f"{len(sweep.runs)} training run(s) ("
        + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        + f"), {len(sweep.cells)} scored cell(s)."
    ]
    if best is None:
        return lines + ["No run has a scored trained cell yet: nothing to compare."]
    se = f" ± {best.objective_se:.3f}" if best.objective_se is not None else ""
    label = f" ({sweep.label(best.run)})" if sweep.varying else ""
    lines.append(
        f"Best: run {best.run.name}{label} at {describe_cell(best.row)}, "
        f"objective {best.row.objective:.4f}{se}."
    )
    close = best.within_noise
    if close:
        lines.append(
            f"{len(close)} other cell(s) are within noise of it (gap under two standard "
            "errors): the prompts and seeds do not separate them, so prefer the cheaper one "
            "or add prompts/seeds (eval.num_prompts, eval.seeds)."
        )
    all_effects = setting_effects(sweep)
    for key in sweep.varying:
        effects = [e for e in all_effects if e.key == key]
        if len(effects) > 1:
            lines.append(
                f"{key}: "
                + "; ".join(
                    f"{e.value} best {e.best:.4f} (mean {e.mean:.4f}, {e.runs} run(s))"
                    for e in effects
                )
                + "."
            )
    lines.append(_trajectory(best))
    return lines


def _trajectory(best: BestCard) -> str:
    """Did the best run's scores peak before its last step (overfitting) or still climb?"""
    row = best.row
    curve = [
        (step, c)
        for step, c in best.run.curve(row.sampling, row.weights).items()
        if step > 0 and c.objective is not None
    ]
    if len(curve) < 2:
        return "Only one trained step was scored: evaluate more steps to see a curve."
    last_step, last = curve[-1]
    if row.step == last_step:
        return (
            f"The objective is highest at the last scored step ({last_step}): the run had not "
            "started to overfit; more steps may help."
        )
    change = _change(row.scores, last.scores)
    return (
        f"The objective peaks at step {row.step} and falls to {last.objective:.4f} by step "
        f"{last_step}{change}{_pattern(row.scores, last.scores)}: stop near step {row.step}."
    )


def _pattern(at_best: dict, at_last: dict) -> str:
    """Name the overfitting pattern when the scores show it."""

    def rose(key: str) -> bool | None:
        a, b = at_best.get(key), at_last.get(key)
        return None if a is None or b is None else b > a

    subject = rose(next((k for k in SUBJECT_KEYS if at_best.get(k) is not None), "dino"))
    prompt = rose(next((k for k in PROMPT_KEYS if at_best.get(k) is not None), "clip_t"))
    if subject and prompt is False:
        return "; overfitting: closer to the photos, further from the prompts"
    if rose("prior_drift"):
        return "; the class prior drifts away from the base model's"
    return ""


def _change(at_best: dict, at_last: dict) -> str:
    parts = []
    for key, name in (
        ("subject_rate", "subject rate"),
        ("dino", "subject fidelity (DINO)"),
        ("prompt_fidelity", "prompt fidelity"),
        ("clip_t", "prompt fidelity (CLIP-T)"),
        ("prior_drift", "prior drift"),
        ("damage", "damaged samples"),
    ):
        a, b = at_best.get(key), at_last.get(key)
        if a is not None and b is not None:
            parts.append(f"{name} {a:.3f} → {b:.3f}")
    return f" ({', '.join(parts)})" if parts else ""
