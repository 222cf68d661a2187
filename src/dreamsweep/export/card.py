"""The model card (README.md) that goes with exported weights: what they are, how they were
chosen, how good they are (with their noise), how to load them and how to get them again."""

from __future__ import annotations

from dreamsweep.export.choose import Chosen
from dreamsweep.report.collect import format_value


def model_card(chosen: Chosen, files: dict[str, str], samples: str | None) -> str:
    """Markdown; ``files``: exported file -> what it is; ``samples``: the grid image's name."""
    run, row = chosen.run, chosen.row
    data = run.config.get("data", {})
    token, cls = data.get("token", "sks"), data.get("class_name", "")
    prompt = str(data.get("prompt", "a photo of {token} {class}"))
    instance_prompt = prompt.replace("{token}", token).replace("{class}", cls)
    model = run.config.get("model") or {}
    base = model.get("path") or model.get("name")
    ci = chosen.objective_interval
    se = f" (95% interval {ci[0]:.4f} to {ci[1]:.4f}, bootstrap over seeds)" if ci else ""
    lines = [
        f"# DreamBooth: {token} {cls}",
        "",
        f"Fine-tuned from `{base}` with DreamSweep; the best cell of `{run.path.parent}`.",
        "",
        f"- trigger: **{token}** (instance prompt: `{instance_prompt}`; class: `{cls}`)",
        f"- chosen cell: step {row.step}, `{row.cell}` ({row.weights} weights)",
        f"- sampling that won: {row.scheduler}, {row.num_inference_steps} steps, "
        f"guidance {format_value(row.guidance_scale)} (the scheduler saved with the pipeline)",
        f"- objective: {format_value(row.objective)}{se}",
        "",
        "| score | value | 95% interval |",
        "|---|---|---|",
    ]
    for name, value in sorted(row.scores.items()):
        spread = row.intervals.get(name)
        shown = "–" if spread is None else f"{spread[0]:.4f} to {spread[1]:.4f}"
        lines.append(f"| {name} | {format_value(value)} | {shown} |")
    lines += ["", "## Files", ""] + [f"- `{f}`: {what}" for f, what in files.items()]
    if samples:
        lines += ["", "## Samples of this cell (prompts down, seeds across, class prompt last)"]
        lines += ["", f"![samples]({samples})"]
    lines += [
        "",
        "## Load",
        "",
        "```python",
        "from diffusers import StableDiffusionPipeline",
        'pipe = StableDiffusionPipeline.from_pretrained("diffusers")',
        f'image = pipe("{instance_prompt}", num_inference_steps={row.num_inference_steps}, '
        f"guidance_scale={format_value(row.guidance_scale)}).images[0]",
        "```",
        "",
        "## Reproduce",
        "",
        "```bash",
        chosen.command,
        "```",
        "",
    ]
    return "\n".join(lines)
