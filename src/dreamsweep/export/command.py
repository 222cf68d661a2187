"""`dreamsweep export <sweep or run folder> [--cell best|<name>] --format ...`.

Writes `exports/<sweep>-<run>-step<n>-<cell>/`: the chosen formats, the cell's sample grid and
a model card (README.md). Built in a temporary folder and swapped in, like reports.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from dreamsweep.export.card import model_card
from dreamsweep.export.cell_weights import cell_components
from dreamsweep.export.choose import Chosen, ExportError, choose
from dreamsweep.runs import staging_folder, swap_in

FORMATS = ("diffusers", "single-file", "lora-kohya")


def export(
    folder: Path,
    cell: str = "best",
    formats: tuple[str, ...] = ("diffusers",),
    out_root: Path = Path("exports"),
    half: bool = False,
) -> tuple[Path, dict[str, int]]:
    """Export the chosen cell's weights; returns the export folder and file -> size in bytes."""
    if unknown := [f for f in formats if f not in FORMATS]:
        raise ExportError(f"--format: unknown {unknown}; known: {', '.join(FORMATS)}")
    chosen = choose(folder, cell)
    kind = chosen.run.setting("method.type")
    if kind in ("loha", "lokr") and set(formats) & {"single-file", "lora-kohya"}:
        raise ExportError(
            f"method.type={kind} exports as diffusers (peft's adapter format) only: the "
            "single-file merge and the kohya (LyCORIS) layout are written for type=lora"
        )
    components, source = cell_components(chosen)
    import torch

    dtype = torch.float16 if half else torch.float32
    if half:
        for module in (components.unet, components.vae, components.text_encoder):
            module.to(dtype)
    out = (out_root / chosen.title).resolve()
    tmp = staging_folder(out)  # also removes what killed exports/reports left there
    try:
        files = {}
        if "diffusers" in formats:
            files["diffusers/"] = _diffusers(chosen, components, tmp / "diffusers", source)
        if "single-file" in formats:
            name = f"{chosen.title}.safetensors"
            files[name] = _single_file(chosen, components, tmp / name, dtype)
        if "lora-kohya" in formats:
            name = f"{chosen.title}-lora.safetensors"
            files[name] = _kohya(chosen, components, tmp / name, dtype)
        samples = None
        if chosen.row.folder is not None and (chosen.row.folder / "grid.png").exists():
            shutil.copy(chosen.row.folder / "grid.png", tmp / "samples.png")
            samples = "samples.png"
        (tmp / "README.md").write_text(model_card(chosen, files, samples), encoding="utf-8")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(tmp, out)
    return out, {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}


def provenance(chosen: Chosen) -> dict:
    """What goes into the weights' metadata: settings (never the optuna section), the cell and
    its scores."""
    from dreamsweep.config import load_config, public_settings

    settings = public_settings(load_config(chosen.run.config, check_machine=False))
    return {
        **settings,
        "dreamsweep_cell": {
            "step": chosen.row.step,
            "cell": chosen.row.cell,
            "objective": chosen.row.objective,
            "scores": chosen.row.scores,
        },
    }


def _diffusers(chosen: Chosen, components, folder: Path, source: str) -> str:
    from dreamsweep.config import load_config
    from dreamsweep.evaluation.schedulers import make_scheduler
    from dreamsweep.models.saving import save_weights

    scheduler = make_scheduler(chosen.row.scheduler, components.noise_scheduler.config)
    if (lora := _lora_source(chosen)) is not None:
        return _copy_lora(lora, folder, scheduler)
    save_weights(
        load_config(chosen.run.config, check_machine=False),
        components,
        folder,
        provenance(chosen),
        scheduler=scheduler,
        extra={"dreamsweep_cell.json": json.dumps(chosen.row.spec.fields(), indent=2) + "\n"},
    )
    return (
        "a diffusers pipeline (StableDiffusionPipeline.from_pretrained) with the winning "
        f"cell's scheduler ({chosen.row.scheduler}); weights from {source}"
    )


def sd_version(components) -> str:
    """v2 (OpenCLIP text encoder layout) when the UNet attends to 1024-wide text features."""
    return "v2" if components.unet.config.cross_attention_dim == 1024 else "v1"


def _single_file(chosen: Chosen, components, path: Path, dtype) -> str:
    """One .safetensors in the original Stable Diffusion layout, for A1111 and ComfyUI."""
    from dreamsweep.export.metadata import (
        IMPL_STABILITY_AI,
        dreamsweep_metadata,
        modelspec_metadata,
        sd_architecture,
    )
    from dreamsweep.export.single_file import TEXT_LAYOUTS, write_pipeline_single_file

    version = sd_version(components)
    prediction = components.noise_scheduler.config.get("prediction_type", "epsilon")
    data = chosen.run.config.get("data", {})
    metadata = {
        **modelspec_metadata(
            architecture=sd_architecture(version, prediction),
            implementation=IMPL_STABILITY_AI,
            title=chosen.title,
            resolution=int(data.get("resolution", 512)),
            prediction_type=prediction,
            trigger_phrase=f"{data.get('token', 'sks')} {data.get('class_name', '')}".strip(),
        ),
        **dreamsweep_metadata(
            settings=provenance(chosen), cell=chosen.row.cell, scores=chosen.row.scores
        ),
    }
    written = write_pipeline_single_file(
        components, path, text_layout=TEXT_LAYOUTS[version], dtype=dtype, metadata=metadata
    )
    return (
        f"Stable Diffusion {version} single file (original key layout, {str(dtype)[6:]}, "
        f"{written.size_bytes / 2**20:.1f} MB) for A1111/ComfyUI and from_single_file"
    )


def _copy_lora(source: Path, folder: Path, scheduler) -> str:
    """A LoRA run's diffusers export: its adapters as saved (what was scored), the base named
    absolutely (the run's relative link would break here) and the cell's scheduler."""
    from dreamsweep.training.lora import BASE_FILE, lora_base

    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("raw", "cell.json"))
    info = {"base": lora_base(source), "scheduler": dict(scheduler.config)}
    (folder / BASE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return (
        "the LoRA in diffusers' format: from_pretrained(<base in base_model.json>), then "
        f"load_lora_weights(this folder); the scheduler to sample with is in {BASE_FILE}"
    )


def _kohya(chosen: Chosen, components, path: Path, dtype) -> str:
    """The run's LoRA in the kohya/A1111 layout with each module's true alpha."""
    from dreamsweep.export.kohya_lora import read_diffusers_lora, write_kohya_lora
    from dreamsweep.export.metadata import (
        IMPL_DIFFUSERS,
        dreamsweep_metadata,
        kohya_base_model_version,
        kohya_lora_metadata,
        modelspec_metadata,
        sd_architecture,
    )
    from dreamsweep.training.lora import LORA_FILE

    source = _lora_source(chosen)
    if source is None:
        raise ExportError(
            f"--format lora-kohya needs a LoRA run (method=lora); {chosen.run.path} is a full "
            "fine-tune: export it as diffusers or single-file"
        )
    state, alphas = read_diffusers_lora(source / LORA_FILE)
    version = sd_version(components)
    prediction = components.noise_scheduler.config.get("prediction_type", "epsilon")
    cfg = chosen.run.config
    metadata = {
        **modelspec_metadata(
            architecture=sd_architecture(version, prediction, adapter="lora"),
            implementation=IMPL_DIFFUSERS,
            title=chosen.title,
            resolution=int(cfg["data"]["resolution"]),
            prediction_type=prediction,
            trigger_phrase=f"{cfg['data']['token']} {cfg['data']['class_name']}".strip(),
        ),
        **kohya_lora_metadata(
            network_dim=int(cfg["method"]["rank"]),
            network_alpha=float(cfg["method"]["alpha"]),
            base_model_version=kohya_base_model_version(version, prediction),
            num_train_images=len(chosen.run.result.get("instance_images", [])) or 0,
            resolution=int(cfg["data"]["resolution"]),
            learning_rate=float(cfg["optim"]["lr"]),
            max_train_steps=int(chosen.row.step),
        ),
        **dreamsweep_metadata(
            settings=provenance(chosen), cell=chosen.row.cell, scores=chosen.row.scores
        ),
    }
    written = write_kohya_lora(path, state, alphas, dtype=dtype, metadata=metadata)
    return (
        f"the LoRA in the kohya/A1111 layout (true alpha {cfg['method']['alpha']}, rank "
        f"{cfg['method']['rank']}, {written.size_bytes / 2**10:.0f} KB): A1111/ComfyUI "
        "models/Lora, or diffusers load_lora_weights"
    )


def _lora_source(chosen: Chosen) -> Path | None:
    """The LoRA folder holding the chosen cell's adapters."""
    from dreamsweep.best_weights import kept_cell
    from dreamsweep.training.lora import is_lora_folder

    run, row = chosen.run.path, chosen.row
    kept = kept_cell(run)
    if kept is not None and (kept["step"], kept["cell"]) == (row.step, row.cell):
        return run / "best" if is_lora_folder(run / "best") else None
    final = run / "model" / ("raw" if row.weights == "raw" else "")
    return final if is_lora_folder(final) else None
