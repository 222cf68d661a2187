"""User strings in generated text stay what they are: Python literals, Markdown, YAML, fences."""

from __future__ import annotations

import yaml

from dreamsweep.export.card import fenced, md_text, py_str, yaml_str

HOSTILE = 'x\'"); import os; os.system("touch PWNED")#<script>alert(1)</script>\\ ```'


def test_a_python_literal_evaluates_to_the_string_and_cannot_end_its_fence():
    literal = py_str(HOSTILE)
    assert eval(literal) == HOSTILE  # noqa: S307 (a literal, what a user pastes)
    assert "`" not in literal
    block = fenced(f"prompt = {literal}", "python")
    assert block.startswith("```python\n") and block.count("```") == 2


def test_markdown_text_has_no_markup_and_yaml_reads_back_the_same_value():
    text = md_text(HOSTILE)
    assert "<" not in text and "&lt;script&gt;" in text and "\\`\\`\\`" in text
    assert yaml.safe_load(f"value: {yaml_str(HOSTILE)}")["value"] == HOSTILE
    assert "<" not in yaml_str(HOSTILE)


def test_a_fence_is_longer_than_any_backtick_run_inside():
    block = fenced("echo ````", "bash")
    assert block.startswith("`````bash\n") and block.endswith("\n`````")
