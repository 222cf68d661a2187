"""Fold the evaluation axes of a grid into the cells of fewer training runs (dreamsweep.cells).

`eval.schedulers=pndm,ddim` becomes one run scored with both, `ema.enabled=true,false` one EMA
run also scored with its raw weights, and `train.max_steps=400,800,1200` one run to 1200
scored at 400/800/1200 — but only when the LR schedule of every run, after all overrides and
swept config groups, does not depend on the total number of steps (cells.step_folds).
Otherwise the steps stay a training axis and the plan says why. Which axes fold is decided in
`dreamsweep.cells`; this module only rewrites the override lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from dreamsweep.cells import EMA_AXIS, LIST_AXES, STEP_AXIS, step_folds


@dataclass
class GridPlan:
    runs: list[list[str]]  # the overrides of each training run
    folded: list[str] = field(default_factory=list)  # overrides every run gets
    warnings: list[str] = field(default_factory=list)


def _values(override) -> list[str]:
    """The swept values as override text ('50', 'true', "'a b'"); Hydra parses 50 as an int."""
    from hydra.core.override_parser.types import Transformer

    return [
        v if isinstance(v, str) else _text(v)
        for v in override.sweep_iterator(transformer=Transformer.encode)
    ]


def _text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _setting(key: str, value) -> str:
    """One grid point's override; list-valued evaluation axes take a one-element list."""
    return f"{key}=[{value}]" if key in LIST_AXES else f"{key}={value}"


def _runs(base: list[str], sweeps: dict) -> list[list[str]]:
    keys = list(sweeps)
    combos = itertools.product(*(_values(sweeps[k]) for k in keys))
    return [base + [_setting(k, v) for k, v in zip(keys, combo, strict=True)] for combo in combos]


def plan_grid(
    overrides: list,
    at_steps: list[int],
    schedule_of: Callable[[list[str]], str],
    fold: bool = True,
) -> GridPlan:
    """overrides: Hydra Override objects (hydra.sweeper.params, then the command line).
    schedule_of: the composed optim.lr_scheduler of one run's overrides."""
    sweeps, fixed, folded = {}, {}, {}
    for o in overrides:  # a later line for the same key wins
        key = o.get_key_element()
        sweeps.pop(key, None)
        fixed.pop(key, None)
        (sweeps if o.is_sweep_override() else fixed)[key] = o
    base = [o.input_line for o in fixed.values()]
    if not fold:
        return GridPlan(runs=_runs(base, sweeps))
    for key in list(sweeps):
        values = _values(sweeps[key])
        if key in LIST_AXES:
            folded[key] = f"{key}=[{','.join(values)}]"
        elif key == EMA_AXIS and {v.lower() for v in values} == {"true", "false"}:
            folded[key] = f"{EMA_AXIS}=true"
            folded["eval.weights"] = "eval.weights=[ema,raw]"
        else:
            continue
        del sweeps[key]
    warnings = []
    if STEP_AXIS in sweeps:
        steps = [int(v) for v in _values(sweeps[STEP_AXIS])]
        with_steps = {
            STEP_AXIS: f"{STEP_AXIS}={max(steps)}",
            "eval.at_steps": f"eval.at_steps=[{','.join(map(str, sorted({*steps, *at_steps})))}]",
        }
        rest = {k: v for k, v in sweeps.items() if k != STEP_AXIS}
        candidates = _runs(base + list({**folded, **with_steps}.values()), rest)
        blocking = next(
            ((run, s) for run in candidates if not step_folds(s := schedule_of(run))), None
        )
        if blocking is None:
            folded.update(with_steps)
            sweeps = rest
        else:
            run, schedule = blocking
            swept = run[len(run) - len(rest) :]
            warnings.append(
                f"train.max_steps is not folded: the LR schedule '{schedule}'"
                f"{' of the run with ' + ' '.join(swept) if swept else ''} depends on the total "
                "number of steps, so each step count is a training run of its own"
            )
    runs = _runs(base + list(folded.values()), sweeps)
    return GridPlan(runs=runs, folded=list(folded.values()), warnings=warnings)
