"""index.html and report.md from the package's Jinja2 templates.

The HTML is one self-contained file (CSS inline, figures in figures/ beside it) with every
piece of text autoescaped: prompts and settings come from users and must never become markup.
The Markdown carries the same content for a README or a pull request.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

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


def _environment(markdown: bool) -> Environment:
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
    return env


def render_pages(context: dict[str, Any], out: Path) -> None:
    """Write out/index.html and out/report.md."""
    html_page = _environment(markdown=False).get_template("index.html.j2").render(**context)
    (out / "index.html").write_text(html_page, encoding="utf-8")
    markdown = _environment(markdown=True).get_template("report.md.j2").render(**context)
    (out / "report.md").write_text(markdown, encoding="utf-8")
