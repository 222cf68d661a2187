"""`dreamsweep export <sweep or run folder> [--cell best|<name>] --format ...`.

Writes `exports/<sweep>-<run>-step<n>-<cell>/`: the chosen formats, the cell's sample grid and
a model card (README.md). Built in a temporary folder and swapped in, like reports.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from dreamsweep.atomic import new_folder
from dreamsweep.export.card import (
    DIFFUSERS,
    DIFFUSERS_LORA,
    EMBEDDING,
    KOHYA,
    PEFT,
    SINGLE_FILE,
    CardInput,
    model_card,
)
from dreamsweep.export.cell_weights import cell_components
from dreamsweep.export.choose import Chosen, ExportError, choose
from dreamsweep.export.family import (
    family_of,
    pipeline_class,
    pipeline_of,
    sd_version,
    text_encoders,
)
from dreamsweep.export.formats import FORMATS
from dreamsweep.export.published import (
    DEFAULT_AUTHOR,
    MIN_DIFFUSERS,
    base_of,
    license_of,
    spec_keys,
    training_keys,
    trigger,
)
from dreamsweep.models.portable import add_vocab_files
from dreamsweep.registry import load, unknown_message
from dreamsweep.runs import grid_file

SINGLE_FILE_CONFIG = "single_file_config"  # configs + tokenizer + scheduler, no weights


@dataclass
class Options:
    """What the command line gives besides the cell: formats, precision, license, author."""

    formats: tuple[str, ...] = ("diffusers",)
    half: bool = False
    license: str | None = None
    author: str = DEFAULT_AUTHOR


def export(
    folder: Path,
    cell: str = "best",
    formats: tuple[str, ...] = ("diffusers",),
    out_root: Path = Path("exports"),
    half: bool = False,
    license: str | None = None,
    author: str = DEFAULT_AUTHOR,
) -> tuple[Path, dict[str, int]]:
    """Export the chosen cell's weights; returns the export folder and file -> size in bytes."""
    options = Options(formats, half, license, author)
    if unknown := [f for f in formats if f not in FORMATS]:
        raise ExportError(f"--format: {unknown_message(unknown[0], FORMATS)}")
    chosen = choose(folder, cell)
    kind = chosen.run.settings.method.type
    if kind in ("loha", "lokr") and set(formats) & {"single-file", "lora-kohya"}:
        raise ExportError(
            f"method.type={kind} exports as diffusers (peft's adapter format) only: the "
            "single-file merge and the kohya (LyCORIS) layout are written for type=lora"
        )
    _check_embedding_formats(chosen, formats)
    components, source = cell_components(chosen)
    import torch

    dtype = torch.float16 if half else torch.float32
    if half:
        for name in ("unet", "vae", "text_encoder", "text_encoder_2"):
            if getattr(components, name, None) is not None:
                getattr(components, name).to(dtype)
    out = (out_root / chosen.title).resolve()
    with new_folder(out) as tmp:  # also removes what killed exports/reports left there
        card = _fill(chosen, components, source, tmp, options, dtype)
        (tmp / "README.md").write_text(model_card(card), encoding="utf-8")
    return out, {str(p.relative_to(out)): p.stat().st_size for p in out.rglob("*") if p.is_file()}


def _fill(chosen: Chosen, components, source: str, tmp: Path, options: Options, dtype) -> CardInput:
    """Write every asked format into ``tmp``; return what the card says about them."""
    from dreamsweep.evaluation.schedulers import SCHEDULERS

    grid = _grid(chosen)
    card = CardInput(
        chosen=chosen,
        files={},
        kinds={},
        base=base_of(chosen),
        license=license_of(chosen, options.license),
        scheduler_class=SCHEDULERS[chosen.row.scheduler][0],
        images=scored_images(chosen),
        pipeline_class=pipeline_class(family_of(components)),
        text_encoders=text_encoders(components),
    )
    if chosen.run.setting("method.name") in ("textual_inversion", "pivotal"):
        card.images = [(typed_cell_prompt(chosen, p), s, g) for p, s, g in card.images]
    lora = _lora_source(chosen)
    job = FormatJob(chosen, components, source, tmp, options, dtype, grid, lora, card)
    for name, form in FORMATS.items():  # the table's order: single-file reuses diffusers'
        if name in options.formats:
            load(form.write)(job)
    if lora is not None and {DIFFUSERS_LORA, PEFT, KOHYA} & set(card.kinds):
        card.lora_scale_before_033 = _old_diffusers_scale(chosen)
        _copy_base(chosen, tmp)
        if (tmp / "base_model").is_dir():
            card.files["base_model/"] = "the base model the adapters go on (built in code)"
    if grid is not None:
        shutil.copy(grid, tmp / "samples.png")
        card.samples = "samples.png"
    return card


@dataclass
class FormatJob:
    """What a format's writer (export/formats.py) gets: the cell, its loaded weights, the
    staging folder to write into and the model card to tell about what it wrote."""

    chosen: Chosen
    components: object
    source: str
    tmp: Path
    options: Options
    dtype: object
    grid: Path | None
    lora: Path | None  # the run's adapters, for a LoRA run
    card: CardInput


def write_diffusers(job: FormatJob) -> None:
    card, lora = job.card, job.lora
    kind = DIFFUSERS if lora is None else (DIFFUSERS_LORA if _is_lora(lora) else PEFT)
    card.kinds[kind] = "diffusers"
    card.files["diffusers/"] = _diffusers(
        job.chosen, job.components, job.tmp / "diffusers", job.source, lora
    )


def write_single_file(job: FormatJob) -> None:
    chosen, card, tmp = job.chosen, job.card, job.tmp
    name = f"{chosen.title}.safetensors"
    card.kinds[SINGLE_FILE] = name
    card.files[name] = _single_file(
        chosen, job.components, tmp / name, job.dtype, job.options, job.grid
    )
    card.single_file_config = "diffusers" if DIFFUSERS in card.kinds else SINGLE_FILE_CONFIG
    if DIFFUSERS not in card.kinds:
        _write_configs(chosen, job.components, tmp / SINGLE_FILE_CONFIG)
        card.files[f"{SINGLE_FILE_CONFIG}/"] = (
            "the pipeline's configs, tokenizer and winning scheduler (no weights): "
            "from_single_file(..., config=...) reads them offline"
        )


def write_kohya(job: FormatJob) -> None:
    chosen, card = job.chosen, job.card
    name = f"{chosen.title}-lora.safetensors"
    card.kinds[KOHYA] = name
    card.files[name] = _kohya(
        chosen, job.components, job.tmp / name, job.dtype, job.options, job.grid, job.lora
    )


def write_embedding(job: FormatJob) -> None:
    """A textual-inversion or pivotal run's trigger embedding (export/embedding.py), with the
    base it goes on when that base was built in code."""
    from dreamsweep.export.embedding import export_embedding

    card, tmp = job.card, job.tmp
    card.kinds[EMBEDDING] = "embedding"
    card.files["embedding/"] = export_embedding(
        job.chosen, job.components, tmp / "embedding", provenance(job.chosen)
    )
    _copy_base(job.chosen, tmp)
    if (tmp / "base_model").is_dir():
        card.files["base_model/"] = "the base model the embedding goes on (built in code)"


def _check_embedding_formats(chosen: Chosen, formats: tuple[str, ...]) -> None:
    """An embedding run exports its embedding; other runs have none to export."""
    method = chosen.run.setting("method.name")
    if method == "textual_inversion" and (other := [f for f in formats if f != "embedding"]):
        raise ExportError(
            f"--format {','.join(other)}: a textual-inversion run's weights are an embedding on "
            "the unchanged base; export it with --format embedding"
        )
    if method not in ("textual_inversion", "pivotal") and "embedding" in formats:
        raise ExportError(
            f"--format embedding needs a run that learned an embedding (method={method} did "
            "not): method=textual_inversion or pivotal"
        )


def typed_cell_prompt(chosen: Chosen, prompt: str) -> str:
    """A scored prompt as a user types it (the trigger once; the pipeline expands it)."""
    from dreamsweep.training.embeddings import typed

    data, method = chosen.run.config.get("data", {}), chosen.run.config.get("method", {})
    return typed(prompt, str(data.get("token")), int(method.get("num_vectors") or 1))


def _grid(chosen: Chosen) -> Path | None:
    grid = grid_file(chosen.row.folder) if chosen.row.folder is not None else None
    return grid if grid is not None and grid.exists() else None


def scored_images(chosen: Chosen) -> list[tuple[str, int, int]]:
    """(prompt, seed, generator seed) of each scored image of the cell, in its scores file's order:
    the generator seed is `evaluation.sampling.job_seed` of the pair."""
    from dreamsweep.evaluation.sampling import Job, job_seed

    pairs = dict.fromkeys(zip(chosen.row.prompts, chosen.row.seeds, strict=False))
    return [(p, s, job_seed(Job(p, s))) for p, s in pairs]


def _is_lora(folder: Path) -> bool:
    from dreamsweep.training.lora import LORA_FILE

    return (folder / LORA_FILE).exists()


def _old_diffusers_scale(chosen: Chosen) -> float | None:
    """alpha / rank when it is not 1: what diffusers < 0.33 (which reads alpha = rank) needs."""
    method = chosen.run.settings.method
    scale = float(method.alpha or 0) / float(method.rank or 1)
    return None if scale in (0.0, 1.0) else scale


def provenance(chosen: Chosen) -> dict:
    """What goes into the weights' metadata: settings without secrets or this machine's paths
    (config.portable_settings), the cell and its scores."""
    from dreamsweep.config import portable_settings

    settings = portable_settings(chosen.run.settings)
    return {
        **settings,
        "dreamsweep_cell": {
            "step": chosen.row.step,
            "cell": chosen.row.cell,
            "objective": chosen.row.objective,
            "scores": chosen.row.scores,
        },
    }


def _diffusers(chosen: Chosen, components, folder: Path, source: str, lora: Path | None) -> str:
    """The family's pipeline folder (StableDiffusionPipeline / StableDiffusionXLPipeline) with
    the winning cell's scheduler, or a LoRA run's adapters (:func:`_copy_lora`)."""
    from dreamsweep.evaluation.schedulers import make_scheduler

    scheduler = make_scheduler(chosen.row.scheduler, components.noise_scheduler.config)
    if lora is not None:
        return _copy_lora(chosen, lora, folder, scheduler)
    pipe = pipeline_of(components, scheduler)
    cell = {"dreamsweep_cell.json": json.dumps(chosen.row.spec.fields(), indent=2) + "\n"}
    write_pipeline_folder(pipe, folder, provenance(chosen), cell)
    return (
        f"a diffusers pipeline ({type(pipe).__name__}.from_pretrained) with the winning "
        f"cell's scheduler ({chosen.row.scheduler}); weights from {_run_part(chosen, source)}"
    )


def write_pipeline_folder(pipe, folder: Path, settings: dict, extra: dict[str, str]) -> None:
    """``pipe`` as a `from_pretrained` folder, every weights file stamped with ``settings`` and
    made portable (models/saving.write_folder), ``extra`` text files beside it."""
    from dreamsweep.models.saving import write_folder

    write_folder(
        folder,
        lambda tmp: pipe.save_pretrained(str(tmp), safe_serialization=True),
        settings,
        extra,
    )


def _run_part(chosen: Chosen, source: str) -> str:
    """Where in the run the weights came from, relative to the run (best, model/raw...)."""
    path = Path(source)
    inside = path.is_relative_to(chosen.run.path)
    return f"{chosen.run.name}/{path.relative_to(chosen.run.path)}" if inside else path.name


def _write_configs(chosen: Chosen, components, folder: Path) -> None:
    """The pipeline without its weights: what from_single_file(config=...) reads."""
    from dreamsweep.evaluation.schedulers import make_scheduler

    scheduler = make_scheduler(chosen.row.scheduler, components.noise_scheduler.config)
    write_pipeline_configs(pipeline_of(components, scheduler), folder)


def write_pipeline_configs(pipe, folder: Path) -> None:
    """model_index.json, every model's config and the tokenizer(s) of ``pipe``, no weights."""
    folder.mkdir(parents=True)
    pipe.save_config(str(folder))  # model_index.json
    for name in ("unet", "vae", "scheduler"):
        getattr(pipe, name).save_config(str(folder / name))
    for name in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).config.save_pretrained(str(folder / name))
    for name in ("tokenizer", "tokenizer_2"):
        if getattr(pipe, name, None) is not None:
            getattr(pipe, name).save_pretrained(str(folder / name))
    add_vocab_files(folder)


def _single_file(
    chosen: Chosen, components, path: Path, dtype, options: Options, grid: Path | None
) -> str:
    """One .safetensors in the original Stable Diffusion (SDXL: sgm) layout, for A1111 and
    ComfyUI."""
    from dreamsweep.export.metadata import (
        IMPL_STABILITY_AI,
        dreamsweep_metadata,
        modelspec_metadata,
        sd_architecture,
    )
    from dreamsweep.export.single_file import TEXT_LAYOUTS, write_pipeline_single_file

    version = sd_version(components)
    prediction = components.noise_scheduler.config.get("prediction_type", "epsilon")
    merged = None
    if _lora_source(chosen) is not None:  # the adapters fused into the base
        merged = f"{base_of(chosen).hub_id or base_of(chosen).name}, {chosen.title}-lora"
    metadata = {
        **modelspec_metadata(
            architecture=sd_architecture(version, prediction),
            implementation=IMPL_STABILITY_AI,
            title=chosen.title,
            resolution=chosen.run.settings.data.resolution,
            prediction_type=prediction,
            trigger_phrase=trigger(chosen),
            **spec_keys(
                chosen,
                author=options.author,
                license=license_of(chosen, options.license),
                grid=grid,
                usage=f"Trigger: {trigger(chosen)}",
                merged_from=merged,
            ),
        ),
        **dreamsweep_metadata(
            settings=provenance(chosen), cell=chosen.row.cell, scores=chosen.row.scores
        ),
    }
    pivotal = chosen.run.setting("method.name") == "pivotal"
    if pivotal:  # the trigger's rows go as the embedding file (--format embedding)
        from dreamsweep.export.embedding import base_vocabulary

        components = base_vocabulary(components)
    written = write_pipeline_single_file(
        components, path, text_layout=TEXT_LAYOUTS[version], dtype=dtype, metadata=metadata
    )
    fused = " (the LoRA fused into its base)" if merged else ""
    name = "Stable Diffusion XL" if version == "xl" else f"Stable Diffusion {version}"
    if pivotal:
        fused += " with the base vocabulary: load the trigger from the embedding file"
    return (
        f"{name} single file{fused} (original key layout, "
        f"{str(dtype)[6:]}, {written.size_bytes / 2**20:.1f} MB) for A1111/ComfyUI and "
        f"from_single_file; ModelSpec architecture {metadata['modelspec.architecture']}"
    )


def _copy_lora(chosen: Chosen, source: Path, folder: Path, scheduler) -> str:
    """A LoRA run's diffusers export: its adapters as saved (what was scored), rewritten
    portable (the shared mode, keys every stack reads, settings without local paths), the base
    named as it travels and the cell's scheduler."""
    from dreamsweep.models.saving import stamp_metadata
    from dreamsweep.training.lora import BASE_FILE

    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("raw", "cell.json"))
    stamp_metadata(folder, provenance(chosen))
    saved = json.loads((source / BASE_FILE).read_text(encoding="utf-8"))
    info = {
        "base": _published_base(chosen),
        "model": chosen.run.settings.model.name,
        "type": saved.get("type", "lora"),
        "scheduler": dict(scheduler.config),
    }
    (folder / BASE_FILE).write_text(json.dumps(info, indent=2, default=str) + "\n")
    return (
        "the LoRA in diffusers' format: from_pretrained(<base in base_model.json>), then "
        f"load_lora_weights(this folder); the scheduler to sample with is in {BASE_FILE}"
    )


def _published_base(chosen: Chosen) -> str:
    """The base as base_model.json names it in an export: the export's base_model/ copy (seen
    from diffusers/), `asset:<name>`, a hub id, or a local model's name."""
    from dreamsweep.config import portable_location

    path = chosen.run.settings.model.path
    return portable_location(path) if path else "../base_model"


def _copy_base(chosen: Chosen, tmp: Path) -> None:
    """A base built in code (tiny) travels with its adapters: the run saved it once."""
    from dreamsweep.models.saving import LORA_BASE_IN_RUN

    saved = chosen.run.path / LORA_BASE_IN_RUN
    if not chosen.run.settings.model.path and saved.is_dir() and not (tmp / "base_model").exists():
        shutil.copytree(saved, tmp / "base_model")
        add_vocab_files(tmp / "base_model")  # a run of older versions lacks them


def _kohya(
    chosen: Chosen, components, path: Path, dtype, options: Options, grid, source: Path | None
) -> str:
    """The run's LoRA in the kohya/A1111 layout with each module's true alpha."""
    from dreamsweep.export.kohya_lora import kohya_namer, read_diffusers_lora, write_kohya_lora
    from dreamsweep.export.metadata import (
        IMPL_DIFFUSERS,
        IMPL_STABILITY_AI,
        dreamsweep_metadata,
        kohya_base_model_version,
        kohya_lora_metadata,
        modelspec_metadata,
        sd_architecture,
    )
    from dreamsweep.training.lora import LORA_FILE

    if source is None:
        raise ExportError(
            f"--format lora-kohya needs a LoRA run (method=lora); {chosen.run.path} is a full "
            "fine-tune: export it as diffusers or single-file"
        )
    state, alphas = read_diffusers_lora(source / LORA_FILE)
    version = sd_version(components)
    prediction = components.noise_scheduler.config.get("prediction_type", "epsilon")
    method = chosen.run.settings.method
    name = path.stem
    metadata = {
        **modelspec_metadata(
            architecture=sd_architecture(version, prediction, adapter="lora"),
            # kohya's choice: its SDXL LoRAs name the sgm UNet, its SD ones the diffusers UNet
            implementation=IMPL_STABILITY_AI if version == "xl" else IMPL_DIFFUSERS,
            title=chosen.title,
            resolution=chosen.run.settings.data.resolution,
            prediction_type=prediction,
            trigger_phrase=trigger(chosen),
            **spec_keys(
                chosen,
                author=options.author,
                license=license_of(chosen, options.license),
                grid=grid,
                usage=f"Trigger: {trigger(chosen)}; A1111: <lora:{name}:1>",
                implementation_version=MIN_DIFFUSERS,
            ),
        ),
        **kohya_lora_metadata(
            base_model_version=kohya_base_model_version(version, prediction),
            **training_keys(chosen, output_name=name),
        ),
        **dreamsweep_metadata(
            settings=provenance(chosen), cell=chosen.row.cell, scores=chosen.row.scores
        ),
    }
    namer = kohya_namer(family_of(components), components.unet.config)
    written = write_kohya_lora(path, state, alphas, dtype=dtype, metadata=metadata, name=namer)
    return (
        f"the LoRA in the kohya/A1111 layout (true alpha {method.alpha}, rank "
        f"{method.rank}, {written.size_bytes / 2**10:.0f} KB): A1111/ComfyUI "
        "models/Lora, or diffusers load_lora_weights; ModelSpec architecture "
        f"{metadata['modelspec.architecture']}"
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
