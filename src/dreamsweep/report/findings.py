"""Plain sentences that say what a sweep found: which settings won, and whether runs overfit."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from dreamsweep.metrics.objective import PROMPT_KEYS, SUBJECT_KEYS
from dreamsweep.report.best import BestCard, candidates, describe_cell
from dreamsweep.report.collect import CellRow, Sweep, format_value
from dreamsweep.verdicts import Gap, compare

MAX_VALUES = 6  # more distinct values than this: not a grid axis


@dataclass
class SettingEffect:
    """One value of a swept setting: the best objectives of the runs that had it, and its
    best cell against the winning value's (a paired verdict)."""

    key: str
    value: str
    runs: int
    best: float
    mean: float
    row: CellRow | None = None  # the value's best cell
    gap: Gap | None = None  # winning value's best cell minus this value's; None for the winner

    @property
    def verdict(self) -> str:
        if self.gap is None:
            return "best" if self.row is not None else ""
        return {"better": "worse", "worse": "better"}.get(self.gap.verdict, "within noise")


def setting_effects(sweep: Sweep) -> list[SettingEffect]:
    """For each swept setting and value, the best and the mean of the runs' best objectives,
    and whether the value's best cell is worse than the winning value's (paired bootstrap)."""
    ranked = candidates(sweep)
    rank = {id(c): i for i, c in enumerate(ranked)}
    effects = []
    for key in sweep.varying:
        by_value: dict[str, list[float]] = {}
        rows: dict[str, CellRow] = {}
        for run in sweep.runs:
            value = format_value(run.setting(key))
            top = next((c for c in ranked if c.run == run.name), None)
            if top is not None:
                by_value.setdefault(value, []).append(top.objective)
                if value not in rows or rank[id(top)] < rank[id(rows[value])]:
                    rows[value] = top  # the value's best cell over its runs
        searched = sweep.study.continuous if sweep.study else []
        if len(by_value) > MAX_VALUES or key in searched:
            continue  # a continuous search axis: Optuna's importances tell its effect
        order = sorted(by_value, key=lambda v: rank[id(rows[v])])
        winner = rows[order[0]] if order else None
        for v in order:
            row, xs = rows[v], by_value[v]
            gap = None
            if row is not winner and row.samples is not None and winner.samples is not None:
                gap = compare(winner.samples, row.samples)
            effects.append(SettingEffect(key, v, len(xs), max(xs), statistics.fmean(xs), row, gap))
    return effects


def findings(
    sweep: Sweep, best: BestCard | None, effects: list[SettingEffect] | None = None
) -> list[str]:
    """The sentences; ``effects``: setting_effects(sweep) when the caller has them already."""
    states = {s: sum(r.state == s for r in sweep.runs) for s in {r.state for r in sweep.runs}}
    lines = [
        f"{len(sweep.runs)} training run(s) ("
        + ", ".join(f"{n} {s}" for s, n in sorted(states.items()))
        + f"), {len(sweep.cells)} scored cell(s)."
    ]
    if best is None:
        return lines + ["No run has a scored trained cell yet: nothing to compare."]
    ci = f" [{best.interval[0]:.3f}, {best.interval[1]:.3f}]" if best.interval else ""
    chance = f", P(best) {best.p_best:.0%}" if best.p_best is not None else ""
    label = f" ({sweep.label(best.run)})" if sweep.varying else ""
    lines.append(
        f"Best: run {best.run.name}{label} at {describe_cell(best.row)}, "
        f"objective {best.row.objective:.4f}{ci}{chance} (95% intervals from a paired "
        f"bootstrap over seeds within each prompt; the prompt suite, {best.suite}, is fixed)."
    )
    lines.append(_separation(best))
    counts = sorted({c.samples.seeds_per_prompt for c in sweep.cells if c.samples and c.step})
    if len(counts) > 1:
        lines.append(
            f"Adaptive evaluation: trained cells were scored on {counts[0]} to {counts[-1]} seeds "
            "per prompt (more only while a cell was within noise of the best); verdicts pair "
            "cells on the seeds they share."
        )
    all_effects = setting_effects(sweep) if effects is None else effects
    for key in sweep.varying:
        effects = [e for e in all_effects if e.key == key]
        if len(effects) > 1:
            lines.append(f"{key}: " + "; ".join(map(_effect_text, effects)) + ".")
    lines.append(_trajectory(best))
    lines.append(_threads(sweep))
    return lines


def _threads(sweep: Sweep) -> str:
    """CPU results are bit-identical only at the same torch thread count: say which it was."""
    used = sorted(
        {str(r.result.get("threads") or r.setting("launcher.threads")) for r in sweep.runs}
    )
    return (
        f"CPU threads per process: {', '.join(used)} (launcher.threads in each config.yaml; a "
        "rerun on CPU reproduces the scores bit for bit at the same count)."
    )


def _separation(best: BestCard) -> str:
    """Which cells the data cannot tell from the best, and what would."""
    close = best.inseparable
    if best.p_best is None:
        return "Cells without per-sample scores cannot be compared (re-score with evaluate.py)."
    if not close:
        return (
            "No other cell has a P(best) of 5% or more: the data separate the best cell "
            "from the rest."
        )
    names = ", ".join(f"{c.row.run}/{c.row.cell}@{c.row.step} ({c.p_best:.0%})" for c in close)
    more = ""
    if best.seeds_needed is not None:
        more = (
            f" About {best.seeds_needed} seeds per prompt would separate the top two "
            f"({best.more_seeds_override})."
        )
    return (
        f"{len(close)} other cell(s) could be the best (P(best) ≥ 5%): {names}; prefer the "
        f"cheaper one or add seeds.{more}"
    )


def _effect_text(e: SettingEffect) -> str:
    text = f"{e.value} best {e.best:.4f} (mean {e.mean:.4f}, {e.runs} run(s))"
    if e.gap is not None:
        text += f", {e.verdict} than the winner ({_gap_text(e.gap)})"
    return text


def _gap_text(gap: Gap) -> str:
    paired = "" if gap.paired else ", unpaired: other prompts or seeds"
    return f"gap {gap.estimate:.3f} [{gap.low:.3f}, {gap.high:.3f}]{paired}"


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
        previous = curve[-2][1]
        rising = ""
        if previous.samples is not None and row.samples is not None:
            gap = compare(row.samples, previous.samples)
            if gap is not None:
                rising = f" ({gap.verdict} than step {previous.step}: {_gap_text(gap)})"
        return (
            f"The objective is highest at the last scored step ({last_step}){rising}: the run "
            "had not started to overfit; more steps may help."
        )
    change = _change(row.scores, last.scores)
    gap = compare(row.samples, last.samples) if row.samples and last.samples else None
    if gap is not None and gap.verdict == "within noise":
        return (
            f"The objective is highest at step {row.step} and {last.objective:.4f} by step "
            f"{last_step}{change}, within noise ({_gap_text(gap)}): no clear overfitting yet."
        )
    verdict = f", a clear drop ({_gap_text(gap)})" if gap is not None else ""
    return (
        f"The objective peaks at step {row.step} and falls to {last.objective:.4f} by step "
        f"{last_step}{change}{verdict}{_pattern(row.scores, last.scores)}: stop near step "
        f"{row.step}."
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
