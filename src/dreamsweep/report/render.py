"""index.html and report.md from the package's Jinja2 templates.

The HTML is one self-contained file (CSS inline, figures in figures/ beside it) with every
piece of text autoescaped: prompts and settings come from users and must never become markup.
The Markdown carries the same content for a README or a pull request.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from dreamsweep.report.collect import format_value


def number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def interval(value: Any, digits: int = 3) -> str:
    """A 95% interval as [low, high]; a dash when there is none."""
    if not value:
        return "—"
    return f"[{value[0]:.{digits}f}, {value[1]:.{digits}f}]"


def percent(value: Any) -> str:
    return "—" if value is None else f"{value:.0%}"


def markdown_cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: no markup, no column breaks."""
    text = html.escape(str(value), quote=False).replace("|", "\\|")
    return " ".join(text.split())


def relative_href(target: Any, report_dir: Path) -> str:
    """A link from the report folder to a run's file, relative so that the report and its
    outputs can move together or be served over http."""
    relative = os.path.relpath(Path(target).resolve(), report_dir.resolve())
    return quote(Path(relative).as_posix())


def _environment(markdown: bool, report_dir: Path) -> Environment:
    env = Environment(
        loader=PackageLoader("dreamsweep.report", "templates"),
        autoescape=False if markdown else select_autoescape(["html", "j2"], default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["num"] = number
    env.filters["md"] = markdown_cell
    env.filters["ci"] = interval
    env.filters["pct"] = percent
    env.filters["setting"] = format_value
    env.filters["href"] = lambda target: relative_href(target, report_dir)
    return env


def render_pages(context: dict[str, Any], out: Path, report_dir: Path | None = None) -> None:
    """Write out/index.html and out/report.md; links are relative to ``report_dir`` (where the
    report ends up; default ``out``)."""
    where = report_dir or out
    html_page = _environment(False, where).get_template("index.html.j2").render(**context)
    (out / "index.html").write_text(html_page, encoding="utf-8")
    markdown = _environment(True, where).get_template("report.md.j2").render(**context)
    (out / "report.md").write_text(markdown, encoding="utf-8")
