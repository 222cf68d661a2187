"""The one filler of prompt templates; imports nothing, so the config check, the evaluation
suite, training captions and the model card all read it without a cycle."""

from __future__ import annotations


def fill_prompt(template: str, token: str, class_name: str) -> str:
    """The one filler of prompt templates (training captions, the evaluation suite, the class
    prompt, the model card): `{token}` and `{class}` replaced as they are (not str.format, so a
    caption's stray braces stay), then white space folded to one space between words and none
    at the ends, so an empty token or a caption file's line break leaves no trace."""
    filled = template.replace("{token}", token).replace("{class}", class_name)
    return " ".join(filled.split())
