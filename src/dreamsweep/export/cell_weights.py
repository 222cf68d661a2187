"""The weights a cell was scored with, loaded as pipeline components, wherever they are kept.

In order: `<run>/best/` when it holds this cell (the usual case for the winner), the final
pipeline `<run>/model/` for a cell of the final step, or a kept training checkpoint
`<run>/checkpoints/step_<n>/` (base model + the checkpoint's tensors; EMA from ema.safetensors).
"""

from __future__ import annotations

from pathlib import Path

from dreamsweep.best_weights import kept_cell
from dreamsweep.export.choose import Chosen, ExportError
from dreamsweep.models.components import SDComponents
from dreamsweep.runs import checkpoint_dirs


def cell_components(chosen: Chosen) -> tuple[SDComponents, str]:
    """The components holding the chosen cell's weights, and where they came from."""
    run, row = chosen.run.path, chosen.row
    kept = kept_cell(run)
    if kept is not None and (kept["step"], kept["cell"]) == (row.step, row.cell):
        return load_weights(run / "best"), f"{run / 'best'}"
    if row.step == chosen.run.final_step and (run / "model").is_dir():
        final = run / "model"
        if row.weights == "raw" and (final / "raw").is_dir():  # a LoRA run's raw adapters
            return load_weights(final / "raw"), f"{final / 'raw'}"
        components = load_weights(final)
        if row.weights == "raw" and (final / "unet_raw").is_dir():
            from diffusers import UNet2DConditionModel

            components.unet = UNet2DConditionModel.from_pretrained(final / "unet_raw")
        return components, str(final)
    if (method := chosen.run.settings.method.name) in ("lora", "textual_inversion"):
        raise ExportError(
            f"step {row.step} of {run} is only in a training checkpoint; method={method} cells "
            f"export from best/ or model/; train it again with: {chosen.command}"
        )
    for step, path in checkpoint_dirs(run / "checkpoints"):
        if step == row.step:
            return _from_checkpoint(chosen, path), str(path)
    raise ExportError(
        f"the weights of step {row.step} of {run} were not kept (no best/, model/ or "
        f"checkpoint of that step); train it again with: {chosen.command}"
    )


def _from_checkpoint(chosen: Chosen, folder: Path) -> SDComponents:
    """Base model + an Accelerate checkpoint: model.safetensors is the UNet, model_1, model_2
    the family's text encoders in order when they were trained (training/setup.py prepares
    them after the UNet); the EMA shadow weights replace the UNet's for an EMA cell."""
    from safetensors.torch import load_file

    from dreamsweep.models.families import family
    from dreamsweep.models.loading import load_components
    from dreamsweep.training.ema import build_ema, ema_weights, load_ema

    cfg = chosen.run.settings
    components = load_components(cfg.model)
    components.unet.load_state_dict(load_file(str(folder / "model.safetensors")))
    for number, encoder in enumerate(family(components).text_encoders(components), start=1):
        if (folder / f"model_{number}.safetensors").exists():
            encoder.load_state_dict(load_file(str(folder / f"model_{number}.safetensors")))
    if chosen.row.weights == "ema":
        ema = build_ema(cfg.ema, components.unet)
        load_ema(ema, folder)
        with ema_weights(ema, components.unet):
            state = {k: v.clone() for k, v in components.unet.state_dict().items()}
        components.unet.load_state_dict(state)
    return components


def load_weights(folder: Path) -> SDComponents:
    """A saved pipeline folder, or a LoRA or embedding folder on its base."""
    from dreamsweep.models.embedding_files import (
        is_embedding_folder,
        load_embedding_components,
        with_embedding,
    )
    from dreamsweep.models.loading import load_components, saved_model
    from dreamsweep.training.lora import is_lora_folder, load_lora_components

    if is_embedding_folder(folder):
        return load_embedding_components(folder)
    if is_lora_folder(folder):
        return with_embedding(load_lora_components(folder), folder)  # pivotal: + embedding
    return load_components(saved_model(folder))
