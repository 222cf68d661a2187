"""Fold evaluation axes out of a grid: they need no extra training runs (DESIGN.md).

Steps (with a constant LR schedule), schedulers, inference steps, guidance and EMA-vs-raw do not
change the weights' trajectory, so `train.max_steps=400,800,1200` becomes one run to 1200
evaluated at 400/800/1200, `eval.schedulers=pndm,ddim` one run scored with both, and
`ema.enabled=true,false` one EMA run also scored with its raw weights. Everything else stays a
training axis: one run per combination.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

LIST_AXES = ("eval.schedulers", "eval.num_inference_steps", "eval.guidance_scale", "eval.weights")
FOLDABLE_SCHEDULES = ("constant", "constant_with_warmup")


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


def plan_grid(
    overrides: list, lr_scheduler: str, at_steps: list[int], fold: bool = True
) -> GridPlan:
    """overrides: Hydra Override objects (command line after hydra.sweeper.params)."""
    sweeps, fixed, folded, warnings = {}, {}, {}, []
    for o in overrides:  # a later line for the same key wins
        key = o.get_key_element()
        sweeps.pop(key, None)
        fixed.pop(key, None)
        (sweeps if o.is_sweep_override() else fixed)[key] = o
    if fold:
        schedule = (
            fixed["optim.lr_scheduler"].value() if "optim.lr_scheduler" in fixed else lr_scheduler
        )
        for key in list(sweeps):
            values = _values(sweeps[key])
            if key in LIST_AXES:
                folded[key] = f"{key}=[{','.join(values)}]"
            elif key == "ema.enabled" and {str(v).lower() for v in values} == {"true", "false"}:
                folded[key] = "ema.enabled=true"
                folded["eval.weights"] = "eval.weights=[ema,raw]"
            elif key == "train.max_steps" and schedule in FOLDABLE_SCHEDULES:
                steps = sorted({int(v) for v in values} | set(at_steps))
                folded[key] = f"train.max_steps={max(int(v) for v in values)}"
                folded["eval.at_steps"] = f"eval.at_steps=[{','.join(map(str, steps))}]"
            elif key == "train.max_steps":
                warnings.append(
                    f"train.max_steps is not folded into one run: the LR schedule "
                    f"'{schedule}' depends on the total number of steps"
                )
                continue
            else:
                continue
            del sweeps[key]
    keys = list(sweeps)
    combos = itertools.product(*(_values(sweeps[k]) for k in keys))
    base = [o.input_line for o in fixed.values()] + list(folded.values())
    runs = [base + [_setting(k, v) for k, v in zip(keys, combo, strict=True)] for combo in combos]
    return GridPlan(runs=runs, folded=list(folded.values()), warnings=warnings)
