"""SDXL exports read back by the stacks that load them, on the shipped toy world XL base (a real
StableDiffusionXLPipeline: two text encoders, `text_time` conditioning).

- single file: the original SDXL layout (`model.diffusion_model.*`, `conditioner.embedders.0.
  transformer.*`, `conditioner.embedders.1.model.*`, `first_stage_model.*`), read back by
  `StableDiffusionXLPipeline.from_single_file(path, config=...)` with every tensor equal; on the
  real SDXL shapes (meta tensors) diffusers recognises it as `xl_base`, key for key;
- kohya LoRA: sgm UNet names, `lora_te1_` / `lora_te2_`, the true alpha; diffusers'
  `load_lora_weights` gives the adapters' images; every key is found by the key maps of A1111
  (`extensions-builtin/Lora/networks.py`: `convert_diffusers_name_to_compvis`, `load_network`,
  `network_apply_weights`) and ComfyUI (`comfy/lora.py`: `model_lora_keys_unet`,
  `model_lora_keys_clip`, `load_lora`), restated below as rules (not their code), and merging
  the file as each of them does gives the weights of the LoRA fused by peft;
- the diffusers folder with the winning scheduler, and the ModelSpec / kohya names for SDXL.
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import safetensors.torch
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from diffusers.loaders.single_file_utils import (
    convert_ldm_clip_checkpoint,
    convert_ldm_unet_checkpoint,
    convert_ldm_vae_checkpoint,
    convert_open_clip_checkpoint,
    infer_diffusers_model_type,
)
from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft
from omegaconf import OmegaConf
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from safetensors.torch import load_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from dreamsweep.cells import Cell, Sampling
from dreamsweep.export.card import DIFFUSERS, KOHYA, SINGLE_FILE, CardInput, model_card
from dreamsweep.export.choose import Chosen
from dreamsweep.export.command import write_pipeline_configs, write_pipeline_folder
from dreamsweep.export.family import (
    family_of,
    pipeline_class,
    pipeline_of,
    sd_version,
    text_encoders,
)
from dreamsweep.export.kohya_lora import (
    kohya_namer,
    peft_module_alphas,
    prefixed,
    read_diffusers_lora,
    write_kohya_lora,
)
from dreamsweep.export.metadata import (
    IMPL_STABILITY_AI,
    kohya_base_model_version,
    kohya_lora_metadata,
    modelspec_metadata,
    read_metadata,
    sd_architecture,
)
from dreamsweep.export.published import base_of, license_of
from dreamsweep.export.single_file import (
    build_ldm_checkpoint,
    convert_unet_to_ldm,
    write_pipeline_single_file,
)
from dreamsweep.models.pipeline import assemble_pipeline, default_sampling_scheduler
from dreamsweep.models.portable import make_portable, with_text_root
from dreamsweep.models.saving import read_settings
from dreamsweep.models.tiny import build_tiny
from dreamsweep.report.collect import CellRow, Run
from dreamsweep.toyworld import XL_BASE_DIR
from dreamsweep.toyworld.pipeline import load
from tests.helpers import compose_raw

MODULES = ("unet", "vae", "text_encoder", "text_encoder_2")
PROMPT = "a red star on a white background"
RANK, ALPHA = 4, 8
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TEXT_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


@pytest.fixture(scope="module")
def base() -> StableDiffusionXLPipeline:
    return load(XL_BASE_DIR)


def _assert_same_weights(a, b, dtype: torch.dtype = torch.float32) -> None:
    for name in MODULES:
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys(), name
        for key in sa:
            assert torch.equal(sa[key].to(dtype), sb[key].to(dtype)), f"{name}.{key}"


def test_the_family_is_read_from_the_pipeline_or_components(base) -> None:
    assert family_of(base) == "sdxl" and sd_version(base) == "xl"
    tiny = build_tiny(seed=0)
    assert family_of(tiny) == "sd" and sd_version(tiny) == "v1"
    assert family_of(assemble_pipeline(tiny)) == "sd"
    assert isinstance(pipeline_of(tiny), StableDiffusionPipeline)

    parts = {name: getattr(base, name) for name in (*MODULES, "tokenizer", "tokenizer_2")}
    components = SimpleNamespace(
        **parts, noise_scheduler=base.scheduler, force_zeros_for_empty_prompt=True
    )
    assert family_of(components) == "sdxl" and sd_version(components) == "xl"
    pipe = pipeline_of(components)
    assert isinstance(pipe, StableDiffusionXLPipeline) and pipe.unet is base.unet
    assert type(pipe.scheduler) is type(default_sampling_scheduler(components))  # one default
    assert pipe.config.force_zeros_for_empty_prompt


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_single_file_reads_back_with_equal_tensors(base, tmp_path, dtype) -> None:
    metadata = modelspec_metadata(
        architecture=sd_architecture("xl"),
        implementation=IMPL_STABILITY_AI,
        title="toy xl",
        resolution=32,
    )
    path = tmp_path / "toy_xl.safetensors"
    written = write_pipeline_single_file(
        base, path, text_layout="sdxl", dtype=dtype, metadata=metadata
    )
    tensors = safetensors.torch.load_file(written.path)
    te2 = "conditioner.embedders.1.model."
    assert "model.diffusion_model.label_emb.0.0.weight" in tensors  # the text_time embedding
    assert "conditioner.embedders.0.transformer.text_model.encoder.layers.0.mlp.fc1.weight" in (
        tensors
    )
    assert f"{te2}transformer.resblocks.0.attn.in_proj_weight" in tensors
    assert not any(k.startswith(te2) and "q_proj" in k for k in tensors)
    projection = base.text_encoder_2.text_projection.weight.to(dtype)
    assert torch.equal(tensors[f"{te2}text_projection"], projection.T)  # OpenCLIP: x @ proj
    assert "first_stage_model.decoder.up.0.block.0.conv1.weight" in tensors
    assert read_metadata(path)["modelspec.architecture"] == "stable-diffusion-xl-v1-base"

    loaded = StableDiffusionXLPipeline.from_single_file(
        str(path), config=str(XL_BASE_DIR), local_files_only=True, torch_dtype=dtype
    )
    assert isinstance(loaded, StableDiffusionXLPipeline) and loaded.unet.dtype == dtype
    _assert_same_weights(base, loaded, dtype=dtype)


SDXL_UNET = {
    "block_out_channels": (320, 640, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 2048,
    "attention_head_dim": (5, 10, 20),
    "transformer_layers_per_block": (1, 2, 10),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
SD_VAE = {
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12}
BIG_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_attention_heads": 20}


def test_real_sdxl_shapes_are_recognised_and_read_back_by_diffusers() -> None:
    """The config-driven mapping on full-size SDXL 1.0 (meta tensors: no memory, no download)
    is what diffusers' single-file reader expects, key for key, and is detected as `xl_base`."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
        vae = AutoencoderKL(**SD_VAE)
        first = CLIPTextModel(CLIPTextConfig(**CLIP_L, num_hidden_layers=12))
        second = CLIPTextModelWithProjection(
            CLIPTextConfig(**BIG_G, num_hidden_layers=32, projection_dim=1280)
        )
    checkpoint = build_ldm_checkpoint(
        unet=unet.state_dict(),
        unet_config=unet.config,
        vae=vae.state_dict(),
        vae_config=vae.config,
        text_encoder=first.state_dict(),
        text_encoder_2=second.state_dict(),
        text_layout="sdxl",
    )
    assert infer_diffusers_model_type(checkpoint) == "xl_base"
    assert "model.diffusion_model.output_blocks.2.2.conv.weight" in checkpoint  # as SDXL's
    assert "model.diffusion_model.input_blocks.8.1.transformer_blocks.9.attn2.to_k.weight" in (
        checkpoint
    )
    assert convert_ldm_unet_checkpoint(checkpoint, unet.config).keys() == unet.state_dict().keys()
    assert convert_ldm_vae_checkpoint(checkpoint, vae.config).keys() == vae.state_dict().keys()
    first_back = convert_ldm_clip_checkpoint(checkpoint)
    assert {k.removeprefix("text_model.") for k in first_back} == first.state_dict().keys()
    second_back = convert_open_clip_checkpoint(
        second, checkpoint, prefix="conditioner.embedders.1.model."
    )
    expected = {k.removeprefix("text_model.") for k in second.state_dict()}
    assert {k.removeprefix("text_model.") for k in second_back} == expected


# -- kohya SDXL LoRA --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(base):
    """The base with a rank-4, alpha-8 peft LoRA (random, non-zero up weights) on the UNet's
    attention and on both text encoders, as DreamSweep's LoRA runs add it."""
    pipe = copy.deepcopy(base)
    torch.manual_seed(1)
    common = {"r": RANK, "lora_alpha": ALPHA, "init_lora_weights": False}
    pipe.unet.add_adapter(LoraConfig(**common, target_modules=UNET_TARGETS))
    for name in ("text_encoder", "text_encoder_2"):
        inject_adapter_in_model(
            LoraConfig(**common, target_modules=TEXT_TARGETS), getattr(pipe, name)
        )
    lora, alphas = {}, {}
    for name in ("unet", "text_encoder", "text_encoder_2"):
        lora.update(prefixed(get_peft_model_state_dict(getattr(pipe, name)), name))
        alphas.update(peft_module_alphas(getattr(pipe, name), name))
    return pipe, lora, alphas


@pytest.fixture(scope="module")
def kohya_file(trained, tmp_path_factory) -> Path:
    pipe, lora, alphas = trained
    path = tmp_path_factory.mktemp("kohya") / "sks_toy_xl.safetensors"
    namer = kohya_namer("sdxl", pipe.unet.config)
    return write_kohya_lora(path, lora, alphas, name=namer).path


def test_kohya_names_are_kohyas_sdxl_names_with_the_true_alpha(kohya_file) -> None:
    tensors = safetensors.torch.load_file(kohya_file)
    # toy world XL: one layer per block, so down_blocks.1's attention is input block 3
    for name in (
        "lora_unet_input_blocks_3_1_transformer_blocks_0_attn1_to_q",
        "lora_unet_middle_block_1_transformer_blocks_0_attn2_to_k",
        "lora_unet_output_blocks_0_1_transformer_blocks_0_attn1_to_out_0",
        "lora_te1_text_model_encoder_layers_0_self_attn_q_proj",
        "lora_te2_text_model_encoder_layers_2_self_attn_out_proj",
    ):
        assert tensors[f"{name}.lora_down.weight"].shape[0] == RANK
        assert tensors[f"{name}.alpha"].item() == ALPHA  # not the rank
    assert not any("down_blocks" in k or k.startswith("lora_te_") for k in tensors)
    assert {k.split("_")[1] for k in tensors} == {"unet", "te1", "te2"}


def _image(pipe) -> torch.Tensor:
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(0)
    out = pipe(
        PROMPT, height=32, width=32, num_inference_steps=2, generator=generator, output_type="pt"
    )
    return out.images


def test_kohya_lora_loads_in_diffusers_with_the_same_images(trained, kohya_file) -> None:
    pipe, _, _ = trained
    fresh = load(XL_BASE_DIR)
    fresh.load_lora_weights(str(kohya_file))
    assert fresh.text_encoder_2.text_model.encoder.layers[0].self_attn.q_proj.scaling == {
        "default_0": ALPHA / RANK
    }
    expected = _image(pipe)
    torch.testing.assert_close(_image(fresh), expected, atol=1e-5, rtol=0)
    assert (_image(load(XL_BASE_DIR)) - expected).abs().max() > 1e-3  # the LoRA does matter


def _fused(pipe) -> dict[str, dict[str, torch.Tensor]]:
    """Each module's state dict with its LoRA merged by peft (the reference)."""
    merged = copy.deepcopy(pipe)
    out = {}
    for name in MODULES:
        module = getattr(merged, name)
        for layer in module.modules():
            if isinstance(layer, BaseTunerLayer):
                layer.merge()
        state = module.state_dict()
        out[name] = {k.replace(".base_layer", ""): v for k, v in state.items() if ".lora_" not in k}
    return out


def _ldm(parts: dict[str, dict[str, torch.Tensor]], pipe) -> dict[str, torch.Tensor]:
    return build_ldm_checkpoint(
        unet=parts["unet"],
        unet_config=pipe.unet.config,
        vae=parts["vae"],
        vae_config=pipe.vae.config,
        text_encoder=parts["text_encoder"],
        text_encoder_2=parts["text_encoder_2"],
        text_layout="sdxl",
    )


def _kohya_modules(tensors: dict[str, torch.Tensor]) -> dict[str, tuple]:
    """kohya name -> (up, down, alpha)."""
    names = {k.split(".", 1)[0] for k in tensors}
    return {
        n: (tensors[f"{n}.lora_up.weight"], tensors[f"{n}.lora_down.weight"], tensors[f"{n}.alpha"])
        for n in names
    }


def _delta(up: torch.Tensor, down: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """W += alpha / rank * up @ down: how A1111 (network_lora) and ComfyUI (weight_adapter)
    scale a LoRA at strength 1."""
    return alpha / down.shape[0] * (up.flatten(1) @ down.flatten(1))


# A1111 `convert_diffusers_name_to_compvis`: the only rule an SDXL kohya name meets is SDXL's
# second text encoder, moved into OpenCLIP names.
_A1111_TE2 = re.compile(r"lora_te2_text_model_encoder_layers_(\d+)_(.+)")
_A1111_X_PROJ = re.compile(r"(.*)_([qkv]_proj)$")


def _a1111_layers(checkpoint: dict[str, torch.Tensor]) -> set[str]:
    """A1111's `network_layer_mapping` names for an SDXL checkpoint: its modules' paths with
    `_` for `.`, the UNet as `diffusion_model_...` (`sd_model.model`), embedder i's wrapped
    model as `{i}_...` (`assign_network_names_to_compvis_modules`)."""
    layers = set()
    for key in checkpoint:
        module = key.rsplit(".", 1)[0]
        module = module.removeprefix("model.").removeprefix("conditioner.embedders.")
        layers.add(module.replace(".", "_"))
    return layers


def _a1111_layer(name: str, layers: set[str]) -> tuple[str, str | None]:
    """A1111 `load_network`: the layer a kohya module lands on (None when it matches none), and
    which third of a MultiheadAttention's in_proj it takes (`q_proj`...) if any."""
    m = _A1111_TE2.match(name)
    key = name
    if m:
        rest = m[2].replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj")
        key = f"1_model_transformer_resblocks_{m[1]}_{rest.replace('self_attn', 'attn')}"
    if key in layers:
        return key, None
    x = _A1111_X_PROJ.match(key)
    if x and x[1] in layers:
        return x[1], x[2]
    if "lora_unet" in name and name.replace("lora_unet", "diffusion_model") in layers:
        return name.replace("lora_unet", "diffusion_model"), None
    if "lora_te1_text_model" in name:
        return name.replace("lora_te1_text_model", "0_transformer_text_model"), None
    return name, None


def _a1111_param(layer: str, checkpoint: dict[str, torch.Tensor]) -> str:
    """The checkpoint key of the weight of A1111 layer ``layer``."""
    found = [k for k in checkpoint if _a1111_layers({k}) == {layer} and k.endswith("weight")]
    assert len(found) == 1, (layer, found)
    return found[0]


def test_a1111_finds_every_key_and_merges_to_the_fused_weights(trained, kohya_file) -> None:
    pipe, _, _ = trained
    original = {name: getattr(load(XL_BASE_DIR), name).state_dict() for name in MODULES}
    checkpoint = {k: v.clone() for k, v in _ldm(original, pipe).items()}
    layers = _a1111_layers(checkpoint)
    missed, landed, in_proj = [], set(), {}
    for name, (up, down, alpha) in _kohya_modules(safetensors.torch.load_file(kohya_file)).items():
        layer, third = _a1111_layer(name, layers)
        if layer not in layers:
            missed.append(name)
            continue
        landed.add(layer)
        key = _a1111_param(layer, checkpoint)
        if third is None:
            checkpoint[key] += _delta(up, down, alpha).reshape(checkpoint[key].shape)
        else:  # q, k, v of OpenCLIP's nn.MultiheadAttention: thirds of its in_proj
            in_proj.setdefault(layer, set()).add(third)
            part = ("q_proj", "k_proj", "v_proj").index(third)
            width = checkpoint[key].shape[0] // 3
            checkpoint[key][part * width : (part + 1) * width] += _delta(up, down, alpha)
    assert missed == []
    # network_apply_weights changes a MultiheadAttention only when q, k, v and out_proj all are
    assert in_proj and all(t == {"q_proj", "k_proj", "v_proj"} for t in in_proj.values())
    assert all(f"{layer}_out_proj" in landed for layer in in_proj)
    expected = _ldm(_fused(pipe), pipe)
    assert checkpoint.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(checkpoint[key], expected[key], atol=1e-6, rtol=0, msg=key)


# ComfyUI `model_lora_keys_clip`: these CLIP module suffixes, in kohya's spelling.
_COMFY_CLIP_MAP = {
    "mlp.fc1": "mlp_fc1",
    "mlp.fc2": "mlp_fc2",
    "self_attn.k_proj": "self_attn_k_proj",
    "self_attn.q_proj": "self_attn_q_proj",
    "self_attn.v_proj": "self_attn_v_proj",
    "self_attn.out_proj": "self_attn_out_proj",
}


def _comfy_key_map(unet_ldm: dict[str, torch.Tensor], clip_l: dict, clip_g: dict) -> dict:
    """kohya name -> ComfyUI state-dict key for SDXL: `lora_unet_<LDM path>` for every UNet
    weight (`diffusion_model.*`), `lora_te1_` -> clip_l, `lora_te2_` -> clip_g (both in
    transformers' names, blocks 0..31)."""
    key_map = {}
    for key in unet_ldm:
        if key.endswith(".weight"):
            path = key.removeprefix("model.diffusion_model.").removesuffix(".weight")
            key_map["lora_unet_" + path.replace(".", "_")] = key
    for prefix, clip, state in (("lora_te1_", "clip_l", clip_l), ("lora_te2_", "clip_g", clip_g)):
        for block in range(32):
            for module, kohya in _COMFY_CLIP_MAP.items():
                key = f"text_model.encoder.layers.{block}.{module}.weight"
                if key in state:
                    name = f"{prefix}text_model_encoder_layers_{block}_{kohya}"
                    key_map[name] = f"{clip}.{key}"
    return key_map


def test_comfyui_finds_every_key_and_merges_to_the_fused_weights(trained, kohya_file) -> None:
    pipe, _, _ = trained
    base = load(XL_BASE_DIR)
    unet = {k: v.clone() for k, v in _ldm(_states(base), base).items() if "diffusion_model" in k}
    clip_l = {with_text_root(k): v.clone() for k, v in base.text_encoder.state_dict().items()}
    clip_g = {with_text_root(k): v.clone() for k, v in base.text_encoder_2.state_dict().items()}
    weights = {**unet, **{f"clip_l.{k}": v for k, v in clip_l.items()}}
    weights.update({f"clip_g.{k}": v for k, v in clip_g.items()})
    key_map = _comfy_key_map(unet, clip_l, clip_g)
    tensors = safetensors.torch.load_file(kohya_file)
    loaded = set()  # comfy `load_lora` warns "lora key not loaded" for any other key
    for name, (up, down, alpha) in _kohya_modules(tensors).items():
        if name in key_map:
            loaded |= {f"{name}.lora_up.weight", f"{name}.lora_down.weight", f"{name}.alpha"}
            target = weights[key_map[name]]
            target += _delta(up, down, alpha).reshape(target.shape)
    assert set(tensors) - loaded == set()

    fused = _fused(pipe)
    expected = _ldm(fused, pipe)
    for key, value in unet.items():
        torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=0, msg=key)
    for clip, name in ((clip_l, "text_encoder"), (clip_g, "text_encoder_2")):
        reference = {with_text_root(k): v for k, v in fused[name].items()}
        for key, value in clip.items():
            torch.testing.assert_close(value, reference[key], atol=1e-6, rtol=0, msg=key)


def test_on_real_sdxl_shapes_every_kohya_unet_name_reaches_its_module() -> None:
    """SDXL 1.0's UNet (two layers per block, ten transformer blocks deep; meta tensors): the
    kohya name of every attention, projection and feed-forward Linear is mapped back to that
    very module by diffusers (`_maybe_map_sgm_blocks_to_diffusers`, then its kohya converter)
    and is a key of ComfyUI's map (and, as `diffusion_model_...`, an A1111 layer)."""
    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    suffixes = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.2")
    targets = {n for n, _ in unet.named_modules() if n.endswith(suffixes)}
    namer = kohya_namer("sdxl", unet.config)
    lora = {}
    for module in targets:
        name = namer(f"unet.{module}")
        lora[f"{name}.lora_down.weight"] = torch.zeros(1, 4)
        lora[f"{name}.lora_up.weight"] = torch.zeros(4, 1)
        lora[f"{name}.alpha"] = torch.tensor(1.0)
    converted, _ = StableDiffusionXLPipeline.lora_state_dict(lora, unet_config=unet.config)
    peft = convert_unet_state_dict_to_peft(
        {k.removeprefix("unet."): v for k, v in converted.items()}
    )
    assert {k.rsplit(".lora_", 1)[0] for k in peft} == targets

    ldm = convert_unet_to_ldm(unet.state_dict(), unet.config)
    names = {k.split(".", 1)[0] for k in lora}
    assert names <= _comfy_key_map(ldm, {}, {}).keys()
    assert {n.replace("lora_unet", "diffusion_model") for n in names} <= _a1111_layers(ldm)


def _states(pipe) -> dict[str, dict[str, torch.Tensor]]:
    return {name: getattr(pipe, name).state_dict() for name in MODULES}


def test_a_diffusers_lora_file_of_both_encoders_keeps_its_alphas(trained, tmp_path) -> None:
    """What an SDXL LoRA run saves (StableDiffusionXLPipeline.save_lora_weights with the
    adapter configs) gives back every module's alpha, text_encoder_2 included."""
    pipe, lora, alphas = trained
    config = LoraConfig(r=RANK, lora_alpha=ALPHA).to_dict()
    parts = {
        name: {k.removeprefix(f"{name}."): v for k, v in lora.items() if k.startswith(f"{name}.")}
        for name in ("unet", "text_encoder", "text_encoder_2")
    }
    StableDiffusionXLPipeline.save_lora_weights(
        tmp_path,
        unet_lora_layers=parts["unet"],
        text_encoder_lora_layers=parts["text_encoder"],
        text_encoder_2_lora_layers=parts["text_encoder_2"],
        unet_lora_adapter_metadata=config,
        text_encoder_lora_adapter_metadata=config,
        text_encoder_2_lora_adapter_metadata=config,
    )
    make_portable(tmp_path)  # what a run and an export do to every LoRA file they write
    state, read = read_diffusers_lora(tmp_path / "pytorch_lora_weights.safetensors")
    assert {k.replace("text_model.", "") for k in read} == {
        k.replace("text_model.", "") for k in alphas
    }
    assert set(read.values()) == {ALPHA}
    second = [k for k in state if k.startswith("text_encoder_2.")]
    assert second and all(k.startswith("text_encoder_2.text_model.") for k in second)


def test_kohya_metadata_names_sdxl_as_kohya_does(trained, tmp_path) -> None:
    pipe, lora, alphas = trained
    meta = {
        **modelspec_metadata(
            architecture=sd_architecture("xl", adapter="lora"),
            implementation=IMPL_STABILITY_AI,
            title="sks toy",
            resolution=1024,
        ),
        **kohya_lora_metadata(
            network_dim=4,
            network_alpha=8,
            base_model_version=kohya_base_model_version("xl", "epsilon"),
            num_train_images=5,
            resolution=1024,
            learning_rate=1e-4,
            max_train_steps=500,
        ),
    }
    namer = kohya_namer("sdxl", pipe.unet.config)
    path = write_kohya_lora(tmp_path / "x.safetensors", lora, alphas, metadata=meta, name=namer)
    read = read_metadata(path.path)
    assert read["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert read["modelspec.implementation"] == IMPL_STABILITY_AI  # kohya's, for sgm names
    assert read["ss_base_model_version"] == "sdxl_base_v1-0" and read["ss_v2"] == "False"
    data = path.path.read_bytes()
    tensors_sha = hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()
    assert read["sshs_model_hash"] == tensors_sha == read["modelspec.hash_sha256"][2:]
    assert len(read["sshs_legacy_hash"]) == 8


def test_diffusers_folder_and_configs_load_as_sdxl_with_the_cells_scheduler(base, tmp_path):
    scheduler = DDIMScheduler.from_config(base.scheduler.config)
    pipe = pipeline_of(base, scheduler)
    write_pipeline_folder(pipe, tmp_path / "diffusers", {"lr": 1e-4}, {"cell.json": "{}\n"})
    loaded = StableDiffusionXLPipeline.from_pretrained(tmp_path / "diffusers")
    assert isinstance(loaded.scheduler, DDIMScheduler)
    _assert_same_weights(base, loaded)
    second = tmp_path / "diffusers" / "text_encoder_2" / "model.safetensors"
    assert read_settings(second) == {"lr": 1e-4}  # stamped like every weights file
    assert all(k.startswith(("text_model.", "text_projection.")) for k in load_file(second))

    write_pipeline_configs(pipe, tmp_path / "configs")
    assert not list((tmp_path / "configs").rglob("*.safetensors"))
    single = tmp_path / "x.safetensors"
    write_pipeline_single_file(base, single, text_layout="sdxl")
    back = StableDiffusionXLPipeline.from_single_file(
        str(single), config=str(tmp_path / "configs"), local_files_only=True
    )
    assert isinstance(back.scheduler, DDIMScheduler) and back.tokenizer_2 is not None
    _assert_same_weights(base, back)


# -- the model card ---------------------------------------------------------------------------


def _chosen(tmp_path: Path) -> Chosen:
    """A toy world XL cell as the report would hand it over (what `dreamsweep export` reads)."""
    spec = Cell(500, Sampling("ddim", 2, 5.0), "raw")
    row = CellRow("run_0", spec, 0.5, {"clip_i": 0.8}, {}, [PROMPT], [0], None)
    config = OmegaConf.to_container(compose_raw("model=toyworld_xl"), resolve=True)
    assert config["model"]["path"] == str(XL_BASE_DIR) and config["data"]["class_name"] == "toy"
    run = Run("run_0", tmp_path / "sweep" / "run_0", "complete", config, [], {}, [row])
    return Chosen(run, row, "python train.py model=toyworld_xl")


def _snippets(card: str) -> list[str]:
    return re.findall(r"```python\n(.*?)\n```", card, flags=re.S)


def test_the_cards_sdxl_snippets_load_each_file_as_written(base, kohya_file, tmp_path, monkeypatch):
    """The card names StableDiffusionXLPipeline and its code runs as written next to the files:
    the diffusers folder, the single file with its configs, the kohya LoRA on the base."""
    chosen = _chosen(tmp_path)
    out = tmp_path / "export"
    pipe = pipeline_of(base, DDIMScheduler.from_config(base.scheduler.config))
    pipe.save_pretrained(out / "diffusers")
    write_pipeline_single_file(base, out / "toy.safetensors", text_layout="sdxl")
    shutil.copy(kohya_file, out / "toy-lora.safetensors")
    card = model_card(
        CardInput(
            chosen=chosen,
            files={},
            kinds={
                DIFFUSERS: "diffusers",
                SINGLE_FILE: "toy.safetensors",
                KOHYA: "toy-lora.safetensors",
            },
            base=base_of(chosen),
            license=license_of(chosen),
            single_file_config="diffusers",
            scheduler_class="DDIMScheduler",
            pipeline_class=pipeline_class(family_of(base)),
            text_encoders=text_encoders(base),
        )
    )
    assert 'license: "apache-2.0"' in card  # the toy world XL's own
    assert "- stable-diffusion-xl" in card and "StableDiffusionPipeline" not in card
    snippets = _snippets(card)
    assert len(snippets) == 3
    monkeypatch.chdir(out)
    for code in snippets:
        scope: dict = {}
        exec(compile(code, "card", "exec"), scope)  # noqa: S102 (the card's own code)
        assert isinstance(scope["pipe"], StableDiffusionXLPipeline)
        assert (out / "sample.png").exists()
        (out / "sample.png").unlink()
