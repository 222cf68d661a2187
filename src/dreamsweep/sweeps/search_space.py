"""Hydra override grammar -> Optuna distributions (and the overrides that are not swept)."""

from __future__ import annotations

from typing import Any

from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)


def to_distribution(override) -> BaseDistribution:
    from hydra.core.override_parser.types import Transformer

    value = override.value()
    if override.is_choice_sweep():
        return CategoricalDistribution(
            list(override.sweep_iterator(transformer=Transformer.encode))
        )
    log = "log" in value.tags
    if override.is_range_sweep():  # Hydra's stop is exclusive, Optuna's high inclusive
        if all(isinstance(x, int) for x in (value.start, value.stop, value.step)):
            return IntDistribution(value.start, value.stop - value.step, step=value.step)
        return FloatDistribution(value.start, value.stop - value.step, step=value.step)
    if override.is_interval_sweep():
        if isinstance(value.start, int) and isinstance(value.end, int):
            return IntDistribution(value.start, value.end, log=log)
        return FloatDistribution(float(value.start), float(value.end), log=log)
    raise ValueError(f"{override.input_line}: unsupported sweep for Optuna")


def split_overrides(lines: list[str], config_loader=None):
    """(distributions, fixed overrides, grid choices or None when not all are choices);
    the command line's arguments come after hydra.sweeper.params and override them."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    distributions, fixed = {}, {}
    for override in parser.parse_overrides(lines):  # a later line wins (command over preset)
        key = override.get_key_element()
        distributions.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            distributions[key] = to_distribution(override)
        else:
            fixed[key] = override.input_line
    grid = None
    if distributions and all(
        isinstance(d, CategoricalDistribution) for d in distributions.values()
    ):
        grid = {k: list(d.choices) for k, d in distributions.items()}
    return distributions, list(fixed.values()), grid


def conditional_space(
    conditional: dict[str, dict[str, dict[str, str]]], config_loader=None
) -> dict[tuple[str, str], dict[str, BaseDistribution]]:
    """`{method: {lora: {optim.lr: "tag(log, interval(3e-5, 3e-4))"}}}` ->
    {("method", "lora"): {"optim.lr": FloatDistribution(...)}}: params asked only in trials
    whose setting has that value (a LoRA and a full fine-tune need LRs 20x apart)."""
    space = {}
    for key, branches in (conditional or {}).items():
        for value, params in branches.items():
            lines = [f"{k}={v}" for k, v in params.items()]
            distributions, fixed, _ = split_overrides(lines, config_loader)
            if fixed:
                raise ValueError(
                    f"hydra.sweeper.conditional.{key}.{value}: {fixed} are not searches"
                )
            space[(str(key), str(value))] = distributions
    return space


def suggest(trial, name: str, distribution: BaseDistribution) -> Any:
    """Ask a trial for one param through Optuna's public API (define-by-run)."""
    d = distribution
    if isinstance(d, CategoricalDistribution):
        return trial.suggest_categorical(name, list(d.choices))
    if isinstance(d, IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)


def conditional_params(trial, space) -> dict[str, Any]:
    """The conditional params of a trial, asked as `<param> | <setting>=<value>` (one Optuna
    param per branch), returned as setting -> value."""
    asked = {}
    for (key, value), distributions in space.items():
        if str(trial.params.get(key)) == value:
            for param, distribution in distributions.items():
                asked[param] = suggest(trial, f"{param} | {key}={value}", distribution)
    return asked


def override_value(value: Any) -> str:
    """A value in Hydra's override grammar: {a:1,b:'x'}, [1,2], 'text', 3."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{override_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(override_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "\\'") + "'"
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    )


def short_key(key: str) -> str:
    """optim.lr -> lr, prior.enabled -> prior, method -> method: what a run name shows."""
    parts = key.lstrip("+~").split(".")
    return parts[-2] if parts[-1] in ("enabled", "name") and len(parts) > 1 else parts[-1]


def run_names(runs: list[dict[str, str]]) -> list[str]:
    """Names of a sweep's runs from the settings that differ between them (`lr=1e-06
    prior=true`), unique within the sweep (`#<n>` added where two would be equal)."""
    keys = [k for k in dict.fromkeys(k for run in runs for k in run)
            if len({run.get(k) for run in runs}) > 1]  # fmt: skip
    names = [" ".join(f"{short_key(k)}={run.get(k)}" for k in keys) or "run" for run in runs]
    return [f"{name} #{i}" if names.count(name) > 1 else name for i, name in enumerate(names)]
