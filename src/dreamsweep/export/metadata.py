"""Provenance metadata for exported `.safetensors` files, and the hashes UIs index them by.

Three families of keys, all strings (a safetensors header maps str -> str):

- `modelspec.*`: the Stability AI model metadata spec, https://github.com/Stability-AI/ModelSpec
  (README.md, "This is specification version 1.0.1"); the values follow what kohya sd-scripts
  writes for SD 1.x/2.x (`library/sai_model_spec.py`: `determine_architecture`,
  `determine_implementation`, `determine_resolution`, `build_metadata_dataclass`).
- `ss_*` (+ `sshs_*`): kohya sd-scripts' training metadata for networks (`train_network.py`,
  the `metadata = {"ss_...": ...}` block, values passed through `str()`), which A1111's LoRA
  metadata view and LoRA managers read; `sshs_model_hash` / `sshs_legacy_hash` as
  `networks/lora.py: LoRANetwork.save_weights` adds them.
- `dreamsweep.*`: our settings, cell and scores, with secrets removed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any, BinaryIO, Literal

import safetensors.torch
import torch

from dreamsweep.secrets import mask_url
from dreamsweep.tensor_files import save_tensors

SAI_MODEL_SPEC_VERSION = "1.0.1"  # ModelSpec README; kohya BASE_METADATA writes the same
IMPL_DIFFUSERS = "diffusers"  # kohya: SD 1.x/2.x LoRA (diffusers UNet module names)
# kohya: a full checkpoint, and an SDXL LoRA (sgm UNet module names)
IMPL_STABILITY_AI = "https://github.com/Stability-AI/generative-models"
ARCH_SDXL_BASE = "stable-diffusion-xl-v1-base"  # kohya sai_model_spec.ARCH_SD_XL_V1_BASE
SDXL_BASE_MODEL_VERSION = "sdxl_base_v1-0"  # kohya sdxl_model_util.MODEL_VERSION_SDXL_BASE_V1_0
KOHYA_NETWORK_MODULE = "networks.lora"
_HASH_BLOCK = 1024 * 1024
# Setting names that hold a secret. Not a bare "token": data.token is the DreamBooth identifier.
_SECRET_KEY = re.compile(
    r"pass(word|wd)|secret|credential|api_?key|(access|auth|api|hf)_?token", re.I
)


def sd_architecture(
    version: Literal["v1", "v2", "xl"],
    prediction_type: str = "epsilon",
    adapter: str | None = None,
) -> str:
    """`modelspec.architecture` as kohya's `determine_architecture` spells it:
    `stable-diffusion-v1`, `stable-diffusion-v2-512`, `stable-diffusion-v2-768-v` (v2 with
    v-prediction), `stable-diffusion-xl-v1-base` (SDXL, whatever its prediction type), with
    `/lora` appended for a LoRA (the spec's `/` adapter separator)."""
    if version == "xl":
        arch = ARCH_SDXL_BASE
    elif version == "v1":
        arch = "stable-diffusion-v1"
    elif version == "v2":
        v = modelspec_prediction_type(prediction_type) == "v"
        arch = "stable-diffusion-v2-768-v" if v else "stable-diffusion-v2-512"
    else:
        raise ValueError(f"unknown Stable Diffusion version {version!r}")
    return f"{arch}/{adapter}" if adapter else arch


def kohya_base_model_version(version: Literal["v1", "v2", "xl"], prediction_type: str) -> str:
    """`ss_base_model_version` as kohya's `model_util.get_model_version_str_for_sd1_sd2`:
    `sd_v1`, `sd_v2`, with `_v` appended for v-prediction; `sdxl_base_v1-0` for SDXL (what
    `sdxl_train_network.py` writes)."""
    if version == "xl":
        return SDXL_BASE_MODEL_VERSION
    v = modelspec_prediction_type(prediction_type) == "v"
    return f"sd_{version}" + ("_v" if v else "")


def modelspec_prediction_type(prediction_type: str) -> str:
    """The spec's `epsilon` / `v` for a diffusers scheduler's `epsilon` / `v_prediction`."""
    mapping = {"epsilon": "epsilon", "v_prediction": "v", "v": "v"}
    if prediction_type not in mapping:
        raise ValueError(f"no modelspec prediction type for {prediction_type!r}")
    return mapping[prediction_type]


def iso_date(when: dt.datetime | None = None) -> str:
    """ISO-8601 to the second, as the spec asks for `date` (kohya uses the same form)."""
    when = when or dt.datetime.now(dt.timezone.utc)
    return when.replace(microsecond=0).isoformat()


def modelspec_metadata(
    *,
    architecture: str,
    implementation: str,
    title: str,
    resolution: int | tuple[int, int],
    prediction_type: str | None = None,
    trigger_phrase: str | None = None,
    date: str | None = None,
    **optional: str | None,
) -> dict[str, str]:
    """The spec's MUST keys plus the SHOULD/CAN ones given (`description`, `author`,
    `usage_hint`, `tags`, `license`, `encoder_layer`...). `hash_sha256` is added by
    :func:`write_safetensors`, which sees the tensor bytes.

    `implementation` as kohya's `determine_implementation` picks it: IMPL_STABILITY_AI for a
    single-file checkpoint in the LDM layout and for an SDXL LoRA, IMPL_DIFFUSERS for an
    SD 1.x/2.x LoRA.
    """
    width, height = (resolution, resolution) if isinstance(resolution, int) else resolution
    keys: dict[str, str | None] = {
        "sai_model_spec": SAI_MODEL_SPEC_VERSION,
        "architecture": architecture,
        "implementation": implementation,
        "title": title,
        "resolution": f"{width}x{height}",
        "date": date or iso_date(),
        "prediction_type": modelspec_prediction_type(prediction_type) if prediction_type else None,
        "trigger_phrase": trigger_phrase,
        **optional,
    }
    return {f"modelspec.{k}": str(v) for k, v in keys.items() if v is not None}


def kohya_lora_metadata(
    *,
    network_dim: int,
    network_alpha: float,
    base_model_version: str,
    num_train_images: int,
    resolution: int | tuple[int, int],
    learning_rate: float,
    max_train_steps: int,
    training_comment: str | None = None,
    **more: Any,
) -> dict[str, str]:
    """kohya's `ss_*` keys for a LoRA: `str()` of the value with kohya's argument types, as
    kohya writes them (`ss_network_alpha` "8.0", `ss_resolution` "(512, 512)", `ss_v2` "True").

    `more` adds other `ss_` keys by name without the prefix (`num_reg_images`, `text_encoder_lr`,
    `unet_lr`, `seed`, `network_dropout`, `noise_offset`, `multires_noise_iterations`...); keys
    whose value is None are left out (kohya would write "None").
    """
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    keys: dict[str, Any] = {
        "network_module": KOHYA_NETWORK_MODULE,
        "network_dim": int(network_dim),
        "network_alpha": float(network_alpha),  # kohya's --network_alpha is a float: "8.0"
        "base_model_version": base_model_version,
        "v2": base_model_version.startswith("sd_v2"),
        "num_train_images": num_train_images,
        "resolution": size,
        "learning_rate": float(learning_rate),
        "max_train_steps": int(max_train_steps),
        "training_comment": training_comment,
        **more,
    }
    return {f"ss_{k}": str(v) for k, v in keys.items() if v is not None}


def _scrub(value: Any) -> Any:
    """Settings without secrets: the `optuna` section (it names the study's storage) and
    secret-named keys are dropped, passwords in URLs masked (see dreamsweep.secrets)."""
    if isinstance(value, Mapping):
        return {
            str(k): _scrub(v)
            for k, v in value.items()
            if k != "optuna" and not _SECRET_KEY.search(str(k))
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return mask_url(value) if isinstance(value, str) else value


def dreamsweep_metadata(
    *, settings: Mapping[str, Any], cell: str, scores: Mapping[str, Any], **extra: Any
) -> dict[str, str]:
    """`dreamsweep.settings` / `.scores` as JSON, `.cell` and any `extra` (JSON unless str)."""
    out = {
        "dreamsweep.settings": json.dumps(_scrub(settings), sort_keys=True, default=str),
        "dreamsweep.cell": cell,
        "dreamsweep.scores": json.dumps(_scrub(scores), sort_keys=True, default=str),
    }
    for key, value in extra.items():
        text = value if isinstance(value, str) else json.dumps(_scrub(value), default=str)
        out[f"dreamsweep.{key}"] = mask_url(text) or ""
    return out


def addnet_hash_safetensors(stream: BinaryIO) -> str:
    """sha256 (hex) of a safetensors file's tensor bytes, i.e. everything after its header.

    This is the "addnet" hash of kohya sd-scripts (`library/train_util.py`:
    `addnet_hash_safetensors`, stored as `sshs_model_hash`) and of A1111
    (`modules/hashes.py`: `addnet_hash_safetensors`, used for LoRA with `use_addnet_hash=True`);
    it does not change when only the metadata does. With a `0x` prefix it is the ModelSpec
    `hash_sha256` ("a hash of all tensor content (ie excluding the header section)").
    """
    digest = hashlib.sha256()
    stream.seek(0)
    header_size = int.from_bytes(stream.read(8), "little")
    stream.seek(8 + header_size)
    for chunk in iter(lambda: stream.read(_HASH_BLOCK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def addnet_hash_legacy(stream: BinaryIO) -> str:
    """kohya's `addnet_hash_legacy` (old sd-webui-additional-networks hash): the first 8 hex
    digits of the sha256 of 64 KiB at offset 1 MiB of the whole file."""
    stream.seek(0x100000)
    return hashlib.sha256(stream.read(0x10000)).hexdigest()[:8]


def kohya_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> dict:
    """`sshs_model_hash` / `sshs_legacy_hash` as kohya's `precalculate_safetensors_hashes`
    computes them: on the file serialized with only the `ss_*` metadata, so that editing other
    metadata later does not change them. Serializes in memory: meant for LoRA-sized files."""
    training = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    buffer = BytesIO(safetensors.torch.save(dict(tensors), training))
    return {
        "sshs_model_hash": addnet_hash_safetensors(buffer),
        "sshs_legacy_hash": addnet_hash_legacy(buffer),
    }


@dataclass(frozen=True)
class WrittenFile:
    """An exported file: where it is, its size in bytes and its tensor-data sha256 (hex)."""

    path: Path
    size_bytes: int
    sha256: str


def _check_strings(metadata: Mapping[str, str]) -> dict[str, str]:
    bad = [k for k, v in metadata.items() if not (isinstance(k, str) and isinstance(v, str))]
    if bad:
        raise TypeError(f"safetensors metadata must be str -> str; not so for {bad}")
    return dict(metadata)


def write_safetensors(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]
) -> WrittenFile:
    """Write `tensors` with `metadata`, adding `modelspec.hash_sha256` when modelspec keys are
    present and kohya's `sshs_*` hashes when `ss_*` keys are.

    The file is written once to learn the hash of its tensor bytes (independent of the header),
    then again with the hash in its header, through `tensor_files.save_tensors` (atomic, the
    shared mode).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = _check_strings(metadata)
    tensors = dict(tensors)
    partial = path.with_name(f".{path.name}.partial")
    try:
        safetensors.torch.save_file(tensors, partial, metadata=meta)
        with open(partial, "rb") as stream:
            digest = addnet_hash_safetensors(stream)
    finally:
        partial.unlink(missing_ok=True)
    if any(k.startswith("modelspec.") for k in meta):
        meta["modelspec.hash_sha256"] = f"0x{digest}"
    if any(k.startswith("ss_") for k in meta):
        meta.update(kohya_hashes(tensors, meta))
    save_tensors(tensors, path, meta)
    return WrittenFile(path=path, size_bytes=path.stat().st_size, sha256=digest)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file ({} when it has none)."""
    with safetensors.safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})
