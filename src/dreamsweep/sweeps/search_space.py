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
