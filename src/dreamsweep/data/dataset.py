"""The training examples of a run: which images, with which prompt.

Prompts are `data.prompt` ("a photo of {token} {class}") or, when `data.captions` is on, a
sidecar `<image>.txt` with `{token}`/`{class}` placeholders (A1111's "[filewords]" idea).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dreamsweep.choices import DATA
from dreamsweep.config import RunConfig
from dreamsweep.data.images import TYPICAL_MAX_IMAGES, load_folder, log, read_caption
from dreamsweep.data.prompt_text import fill_prompt
from dreamsweep.registry import load, pick


@dataclass(frozen=True)
class Example:
    image: Path
    prompt: str


def instance_dir(cfg: RunConfig) -> Path:
    bundled = pick(DATA, cfg.data.name, "data")
    if bundled is not None:
        return load(bundled)
    return Path(cfg.data.instance_dir).expanduser()  # type: ignore[arg-type]


def min_image_size(cfg: RunConfig) -> int:
    return cfg.data.min_image_size or cfg.data.resolution // 2


def instance_examples(cfg: RunConfig) -> list[Example]:
    """The subject's images with their prompts; raises one ImageFolderError for bad files."""
    d = cfg.data
    images = load_folder(instance_dir(cfg), min_size=min_image_size(cfg), skip_bad=d.skip_bad)
    examples = []
    for image in images:
        caption = read_caption(image) if d.captions else None
        examples.append(Example(image, fill_prompt(caption or d.prompt, d.token, d.class_name)))
    return examples


def class_prompt(cfg: RunConfig) -> str:
    return fill_prompt(cfg.prior.class_prompt, cfg.data.token, cfg.data.class_name)


def class_examples(cfg: RunConfig, images: list[Path]) -> list[Example]:
    prompt = class_prompt(cfg)
    return [Example(image, prompt) for image in images]


def check_data(cfg: RunConfig) -> None:
    """Raise one error listing every unusable instance (and class_dir) image, before training;
    say so when there are far more photos than DreamBooth is meant for."""
    count = len(instance_examples(cfg))
    if count > TYPICAL_MAX_IMAGES:
        log.warning(
            "%d instance images in %s: DreamBooth is meant for 3-30 photos of one subject; with "
            "this many, each is seen rarely and training steps should grow accordingly",
            count,
            instance_dir(cfg),
        )
    if cfg.prior.enabled and cfg.prior.class_dir:
        load_folder(
            Path(cfg.prior.class_dir).expanduser(),
            min_size=min_image_size(cfg),
            skip_bad=cfg.data.skip_bad,
        )
