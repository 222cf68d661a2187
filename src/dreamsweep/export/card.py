"""The model card (README.md) that goes with exported weights: what they are, how they were
chosen, how good they are (with their noise), how to load each file that is really there, and
how to redraw a scored image or train the weights again.

It starts with Hub front matter (`base_model`, `instance_prompt`, `tags`, `license`,
`library_name`). Every user string is escaped for where it lands: JSON strings in the YAML,
HTML/Markdown escaping in the text, `repr` in Python code (backticks as `\\x60`, so no literal
can end a code fence), and code fences longer than any run of backticks inside them.
"""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field

from dreamsweep.data.prompt_text import fill_prompt
from dreamsweep.export.choose import Chosen
from dreamsweep.report.collect import format_value
from dreamsweep.report.render import markdown_cell
from dreamsweep.training.embeddings import typed_trigger

# What an export holds, by kind: the name of the file or folder in the export.
DIFFUSERS, DIFFUSERS_LORA, PEFT = "diffusers", "diffusers-lora", "peft"
SINGLE_FILE, KOHYA = "single-file", "lora-kohya"
EMBEDDING = "embedding"  # textual inversion: models/embedding_files.py's files
ADAPTER = "dreambooth"  # the adapter name the LoRA snippets load under
SDXL_PIPELINE = "StableDiffusionXLPipeline"
LORA_FILE = "pytorch_lora_weights.safetensors"  # named: diffusers < 0.33 offline needs it
_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]#|~])")  # emphasis, code, links, tables


def md_text(value: object) -> str:
    """Text that stays text in Markdown and HTML: no tags, no emphasis, links or code."""
    escaped = html.escape(" ".join(str(value).split()), quote=False)
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", escaped)


def py_str(value: object) -> str:
    """A Python string literal for ``value`` (its repr) that cannot close a Markdown fence."""
    return repr(str(value)).replace("`", "\\x60")


def yaml_str(value: object) -> str:
    """A YAML double-quoted scalar (JSON's escapes), with no markup character left raw, so
    that no front-matter value becomes HTML where a page shows it unparsed."""
    text = json.dumps(str(value), ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def fenced(code: str, language: str = "") -> str:
    """A fenced code block whose fence is longer than any run of backticks in ``code``."""
    longest = max((len(run) for run in re.findall(r"`+", code)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{code}\n{fence}"


@dataclass(frozen=True)
class Base:
    """The model the weights were trained from: how the card names it, and the Python
    expression that loads it (None when only the user has it, e.g. a local folder)."""

    name: str  # hub id, or the model config's name
    hub_id: str | None
    load: str  # a Python expression
    label: str = ""  # how the card's text names it, when more than its name
    imports: tuple[str, ...] = ()
    note: str = ""


@dataclass
class CardInput:
    chosen: Chosen
    files: dict[str, str]  # file or folder -> what it is
    kinds: dict[str, str]  # DIFFUSERS... -> the file or folder in the export
    base: Base
    license: str
    samples: str | None = None
    single_file_config: str | None = None  # the folder from_single_file reads configs from
    scheduler_class: str = "PNDMScheduler"
    lora_scale_before_033: float | None = None  # alpha / rank when it is not 1
    images: list[tuple[str, int, int]] = field(default_factory=list)  # prompt, seed, generator
    pipeline_class: str = "StableDiffusionPipeline"  # the family's (export/family.py)
    text_encoders: tuple[str, ...] = ("text_encoder",)  # the pipeline's attribute names


def instance_prompt(chosen: Chosen) -> str:
    data = chosen.run.settings.data
    return fill_prompt(data.prompt, typed_trigger(chosen.run.config), data.class_name)


def front_matter(card: CardInput) -> str:
    """Hub metadata; each value a JSON scalar (valid YAML, every character escaped)."""
    lora = bool({DIFFUSERS_LORA, KOHYA, PEFT} & set(card.kinds))
    tags = ["text-to-image", "stable-diffusion", "dreambooth", "dreamsweep", "diffusers"]
    tags += ["stable-diffusion-xl"] if card.pipeline_class == SDXL_PIPELINE else []
    tags += ["lora"] if lora else []
    tags += ["textual_inversion"] if EMBEDDING in card.kinds else []
    fields = {
        "base_model": card.base.hub_id or card.base.name,
        "instance_prompt": instance_prompt(card.chosen),
        "library_name": "diffusers",
        "license": card.license,
    }
    lines = ["---", *(f"{k}: {yaml_str(v)}" for k, v in fields.items())]
    lines += ["tags:", *(f"- {t}" for t in tags), "---", ""]
    return "\n".join(lines)


def model_card(card: CardInput) -> str:
    """The whole README.md."""
    chosen = card.chosen
    run, row = chosen.run, chosen.row
    token, cls = typed_trigger(run.config), run.settings.data.class_name
    ci = chosen.objective_interval
    se = f" (95% interval {ci[0]:.4f} to {ci[1]:.4f}, bootstrap over seeds)" if ci else ""
    lines = [
        front_matter(card),
        f"# DreamBooth: {md_text(token)} {md_text(cls)}",
        "",
        f"Fine-tuned from {md_text(card.base.label or card.base.name)} with DreamSweep: the "
        f"best cell of run {md_text(run.name)}.",
        "",
        f"- trigger: **{md_text(token)}** (instance prompt: {md_text(instance_prompt(chosen))}; "
        f"class: {md_text(cls)})",
        f"- chosen cell: step {row.step}, {md_text(row.cell)} ({row.weights} weights)",
        f"- sampling that won: {row.scheduler}, {row.num_inference_steps} steps, "
        f"guidance {format_value(row.guidance_scale)} (the scheduler saved with the weights)",
        f"- objective: {format_value(row.objective)}{se}",
        "",
        "| score | value | 95% interval |",
        "|---|---|---|",
    ]
    for name, value in sorted(row.scores.items()):
        spread = row.intervals.get(name)
        shown = "–" if spread is None else f"{spread[0]:.4f} to {spread[1]:.4f}"
        lines.append(f"| {markdown_cell(name)} | {format_value(value)} | {shown} |")
    lines += ["", "## Files", ""]
    lines += [f"- {md_text(f)}: {md_text(what)}" for f, what in card.files.items()]
    if card.samples:
        lines += ["", "## Samples of this cell (prompts down, seeds across, class prompt last)"]
        lines += ["", f"![samples]({card.samples})"]
    lines += ["", "## Load", ""]
    if card.base.note:
        lines += [md_text(card.base.note), ""]
    for kind, write in _LOADERS.items():
        if kind in card.kinds:
            lines += write(card) + [""]
    lines += _redraw(card)
    lines += ["", "## Train it again", "", fenced(chosen.command, "bash"), ""]
    return "\n".join(lines)


def _call(card: CardInput, prompt: str, seed: int) -> list[str]:
    """The pipeline call that draws the scored image of (prompt, seed)."""
    row = card.chosen.row
    size = card.chosen.run.settings.data.resolution
    return [
        f"prompt = {py_str(prompt)}",
        f"generator = torch.Generator().manual_seed({seed})",
        f"image = pipe(prompt, height={size}, width={size}, "
        f"num_inference_steps={row.num_inference_steps}, "
        f"guidance_scale={float(row.guidance_scale)!r}, generator=generator).images[0]",
        'image.save("sample.png")',
    ]


def _first_image(card: CardInput) -> tuple[str, int]:
    if card.images:
        prompt, _, generator = card.images[0]
        return prompt, generator
    return instance_prompt(card.chosen), 0


def _python(card: CardInput, imports: list[str], body: list[str]) -> str:
    prompt, seed = _first_image(card)
    code = ["import torch", *imports, *card.base.imports, "", *body, *_call(card, prompt, seed)]
    return fenced("\n".join(code), "python")


def _diffusers(card: CardInput) -> list[str]:
    folder = card.kinds[DIFFUSERS]
    pipeline = card.pipeline_class
    code = _python(
        card,
        [f"from diffusers import {pipeline}"],
        [f"pipe = {pipeline}.from_pretrained({py_str(folder)})"],
    )
    return [f"### diffusers ({md_text(folder)}/, the winning scheduler included)", "", code]


def _single_file(card: CardInput) -> list[str]:
    file, config = card.kinds[SINGLE_FILE], card.single_file_config
    pipeline = card.pipeline_class
    call = f"pipe = {pipeline}.from_single_file({py_str(file)}, config={py_str(config)})"
    where = f"{md_text(config)}/: its configs, tokenizer and the winning scheduler"
    code = _python(card, [f"from diffusers import {pipeline}"], [call])
    return [
        f"### One file ({md_text(file)})",
        "",
        f"A1111 and ComfyUI: put it in models/Stable-diffusion (A1111) or models/checkpoints "
        f"(ComfyUI). diffusers reads it with the configs in {where}:",
        "",
        code,
    ]


def _base_line(card: CardInput) -> str:
    return f"pipe = {card.pipeline_class}.from_pretrained({card.base.load})"


def _old_diffusers_scale(card: CardInput) -> list[str]:
    """diffusers < 0.33 ignores the alpha in the file's metadata and applies alpha = rank."""
    scale = card.lora_scale_before_033
    if scale is None:
        return []
    return [
        "if Version(diffusers.__version__) < Version('0.33'):  # it reads alpha = rank",
        f"    pipe.set_adapters([{py_str(ADAPTER)}], adapter_weights=[{scale!r}])",
    ]


def _diffusers_lora(card: CardInput) -> list[str]:
    folder = card.kinds[DIFFUSERS_LORA]
    imports = ["import json", "", "import diffusers"]
    if card.lora_scale_before_033 is not None:
        imports.append("from packaging.version import Version")
    imports.append(f"from diffusers import {card.pipeline_class}, {card.scheduler_class}")
    info = py_str(f"{folder}/base_model.json")
    body = [
        _base_line(card),
        f"with open({info}, encoding='utf-8') as f:",
        f"    pipe.scheduler = {card.scheduler_class}.from_config(json.load(f)['scheduler'])",
        f"pipe.load_lora_weights({py_str(folder)}, weight_name={py_str(LORA_FILE)}, "
        f"adapter_name={py_str(ADAPTER)})",
        *_old_diffusers_scale(card),
    ]
    return [
        f"### diffusers LoRA ({md_text(folder)}/)",
        "",
        "The base model, the winning scheduler (in base_model.json) and the adapters:",
        "",
        _python(card, imports, body),
    ]


def _kohya(card: CardInput) -> list[str]:
    file = card.kinds[KOHYA]
    name = file.removesuffix(".safetensors")
    prompt, _ = _first_image(card)
    a1111 = f"<lora:{name}:1> {prompt}"
    code = _python(
        card,
        [f"from diffusers import {card.pipeline_class}"],
        [_base_line(card), f"pipe.load_lora_weights('.', weight_name={py_str(file)})"],
    )
    return [
        f"### kohya LoRA ({md_text(file)}) in A1111, ComfyUI and diffusers",
        "",
        "A1111: put the file in models/Lora and write the trigger with the LoRA in the prompt:",
        "",
        fenced(" ".join(a1111.split())),
        "",
        f"ComfyUI: put it in models/loras, add a LoraLoader (strength 1.0) between the "
        f"checkpoint and the sampler and use the trigger {md_text(instance_prompt(card.chosen))}"
        " in the prompt. diffusers:",
        "",
        code,
    ]


def _peft(card: CardInput) -> list[str]:
    folder = card.kinds[PEFT]
    imports = [
        "from pathlib import Path",
        "",
        f"from diffusers import {card.pipeline_class}",
        "from peft import PeftConfig, inject_adapter_in_model, set_peft_model_state_dict",
        "from safetensors.torch import load_file",
    ]
    body = [
        _base_line(card),
        f"for name in {('unet', *card.text_encoders)!r}:",
        f"    part = Path({py_str(folder)}) / name",
        "    weights = part / 'adapter_model.safetensors'",
        "    if weights.exists():",
        "        module = getattr(pipe, name)",
        "        inject_adapter_in_model(PeftConfig.from_pretrained(str(part)), module)",
        "        set_peft_model_state_dict(module, load_file(str(weights)))",
    ]
    return [
        f"### peft adapters ({md_text(folder)}/: LoHa/LoKr, which diffusers cannot load)",
        "",
        _python(card, imports, body),
    ]


def _embedding(card: CardInput) -> list[str]:
    from dreamsweep.export.card_embedding import embedding_section

    return embedding_section(card)


_LOADERS = {
    DIFFUSERS: _diffusers,
    SINGLE_FILE: _single_file,
    DIFFUSERS_LORA: _diffusers_lora,
    PEFT: _peft,
    KOHYA: _kohya,
    EMBEDDING: _embedding,
}


def _redraw(card: CardInput) -> list[str]:
    """The generator seed of every scored image: each snippet above draws the first one."""
    if not card.images:
        return []
    lines = [
        "## Redraw a scored image",
        "",
        "Each scored image had its own generator, seeded with `job_seed(prompt, seed)` (sha256 "
        "of the prompt and the suite's seed): pass the generator seed below to "
        "`torch.Generator().manual_seed(...)` in the snippets above, with the same height, "
        "width, steps and guidance, to draw it again (on CPU, up to float rounding).",
        "",
        "| image | prompt | seed | generator seed |",
        "|---|---|---|---|",
    ]
    for i, (prompt, seed, generator) in enumerate(card.images):
        lines.append(f"| {i} | {markdown_cell(prompt)} | {seed} | {generator} |")
    return lines
