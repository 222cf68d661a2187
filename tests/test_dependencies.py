"""The package's declared dependencies are ones its code imports: no dead dependencies."""

from __future__ import annotations

import ast
import re
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+
ROOT = Path(__file__).resolve().parents[1]


def imported_top_level_modules(folder: Path) -> set[str]:
    """Every top-level module an `import` names anywhere under folder (lazy imports too)."""
    names = set()
    for file in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names


def declared_dependencies() -> set[str]:
    """The distribution names of pyproject's [project] dependencies, lower case."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {re.split(r"[<>=!~\[; ]", spec)[0].lower() for spec in project["dependencies"]}


def test_every_declared_dependency_is_imported_by_the_package():
    distributions = packages_distributions()  # import name -> the distributions providing it
    imported = imported_top_level_modules(ROOT / "src")
    used = {d.lower() for module in imported for d in distributions.get(module, [])}
    assert declared_dependencies() - used == set(), "in pyproject, imported nowhere in src/"
