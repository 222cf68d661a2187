"""Named choices: each is one table, name -> what builds it, that the config check reads its
names from and the code builds from, so the two can never disagree.

Builders are named "module:function" (as Python entry points are) and imported only when one
is built: a table stays importable without torch or diffusers, so a bad name in a config is
answered at once (config_checks.py).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def known(table: Mapping[str, Any]) -> str:
    """The names of a table, for an error message."""
    return ", ".join(table)


def unknown_message(name: str, table: Mapping[str, Any]) -> str:
    """The one line a bad name gets: what was asked and every known name."""
    return f"'{name}' is not one of: {known(table)}"


def pick(table: Mapping[str, T], name: str, key: str) -> T:
    """table[name], or one ValueError naming the key and the known names (never a fallback)."""
    if name not in table:
        raise ValueError(f"{key}: {unknown_message(name, table)}")
    return table[name]


def load(ref: str) -> Any:
    """The object a "module:function" reference names, imported now."""
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)
