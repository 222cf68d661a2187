"""The SDXL sections: the SD step and sampling comparisons (sections.py) on SDXL-shaped models.

Models: on a CPU the embedded tiny_xl (diffusers' SDXL test shape, at the benchmark's
resolution) and the shipped toy world XL (a real StableDiffusionXLPipeline folder, 32 px);
with `--model sdxl --model-path DIR --device cuda` a real SDXL instead, at 1024 px by default.
"""

from __future__ import annotations

from collections.abc import Callable

from processes import Context, Side, interleaved
from rows import Row, Target, progress_line
from sampling_rows import sampling_rows

XL_VARIANTS = {
    "unet": "UNet only",
    "te": "+ both text encoders",
    "lora": "UNet LoRA rank 4, attention",
}


def xl_models(ctx: Context) -> list[tuple[list[str], str]]:
    """(side.py model arguments, label) of each model the SDXL rows run on."""
    if ctx.args.model == "sdxl":
        return [(["--model=sdxl", f"--model-path={ctx.args.model_path}"],
                 f"SDXL, {ctx.args.resolution} px")]  # fmt: skip
    return [
        (["--model=tiny_xl"], f"tiny_xl, {ctx.args.resolution} px"),
        (["--model=toyworld_xl"], "toy world XL, 32 px"),
    ]


def step_xl_rows(ctx: Context) -> list[Row]:
    """Our training step vs a bare SDXL DreamBooth loop, per model and what is trained.

    Ours: train_step on a TrainState set up as the worker does it (the step rows of
    sections.py, on `model=tiny_xl` / `toyworld_xl` / `sdxl`), EMA and prior off. Floor:
    side_xl.step_floor_xl, diffusers' train_dreambooth_lora_sdxl.py order (both text encoders,
    penultimate hidden states concatenated, the second's pooled embeds, add_time_ids,
    added_cond_kwargs) on the same weights and batch, AdamW (fused). Steps interleaved.
    """
    warmup, repeats = 2, 6 if ctx.quick else 20
    rows = []
    for model_args, label in xl_models(ctx):
        for variant, trained in XL_VARIANTS.items():
            extra = (*model_args, f"--variant={variant}")
            pair = interleaved(
                Side(ctx, "step-ours", *extra), Side(ctx, "step-floor-xl", *extra), warmup, repeats
            )
            ours, floor = pair.medians
            info = pair.baseline_info
            rows.append(
                Row(
                    f"SDXL train step, {label}, {trained}",
                    "s/step",
                    ours,
                    floor,
                    Target("<=", 1.10),
                    pair.ours_peak_mb,
                    pair.baseline_peak_mb,
                    f"{info['params'] / 1e6:.3f} M UNet params, {info['trained'] / 1e6:.3f} M "
                    f"trained; median of {repeats} interleaved steps after {warmup} warm-up",
                )
            )
            print(progress_line(rows[-1]), flush=True)
    return rows


def eval_xl_rows(ctx: Context) -> list[Row]:
    """Evaluation sampling per image: ours vs one StableDiffusionXLPipeline call per image.

    Ours: dreamsweep.evaluation.sampling.generate over the first cell's jobs of the model's
    run (its scheduler, steps, guidance, resolution, batch size). Baseline: the same jobs, one
    `StableDiffusionXLPipeline.__call__` each (from_pretrained of the same weights, no
    watermark) with the same scheduler class, steps, guidance, resolution and seeds.
    """
    models = xl_models(ctx)
    return sampling_rows(ctx, models, "SDXL evaluation sampling per image vs plain pipeline calls")


XL_SECTIONS: dict[str, Callable[[Context], Row | list[Row]]] = {
    "step_xl": step_xl_rows,
    "eval_xl": eval_xl_rows,
}
