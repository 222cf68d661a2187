"""The SDXL floor of the training-step rows: a bare DreamBooth loop on the same weights.

In the order of diffusers' examples/dreambooth/train_dreambooth_lora_sdxl.py: per step the
noise (plus offset noise when the run uses it), a timestep, add_noise; the prompts through both
text encoders (output_hidden_states; the penultimate layers concatenated, the pooled
`text_embeds` of the second) when they train, else that computed once; add_time_ids (original
size, crop (0, 0), target size); unet(..., added_cond_kwargs={"text_embeds", "time_ids"}); MSE
against the noise; backward; AdamW. Nothing of DreamSweep runs in the loop: only the config
(which model, batch size, noise) and the weights come from the product, so both sides do the
same work. Latents are random (their values do not change the cost); the VAE is dropped.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import product
from side_common import STEP_VARIANTS, autocast, count_params, fastest_adamw, run_overrides

# train_dreambooth_lora_sdxl.py's UNet adapter (rank 4 by default); conf/method/lora.yaml's too.
SCRIPT_LORA = {"r": 4, "lora_alpha": 4, "init_lora_weights": "gaussian",
               "target_modules": ["to_k", "to_q", "to_v", "to_out.0"]}  # fmt: skip


def trained_parameters(args: argparse.Namespace, c: Any) -> list[Any]:
    """What the variant trains: the UNet (LoRA: its adapters only), + both text encoders."""
    encoders = (c.text_encoder, c.text_encoder_2)
    train_te = args.variant in ("te", "prior")
    for module in encoders:
        module.train(train_te).requires_grad_(train_te)
    c.unet.train()
    if args.variant == "lora":
        from peft import LoraConfig

        c.unet.requires_grad_(False)
        c.unet.add_adapter(LoraConfig(**SCRIPT_LORA))
    modules = [c.unet, *(encoders if train_te else ())]
    return [p for m in modules for p in m.parameters() if p.requires_grad]


def prompt_encoder(c: Any, prompts: list[str], device: str) -> Callable[[], tuple[Any, Any]]:
    """The script's encode_prompt on fixed prompts: (penultimate hidden states of both text
    encoders concatenated, the second's pooled text_embeds)."""
    import torch

    encoders = (c.text_encoder, c.text_encoder_2)
    ids = [
        tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
            return_tensors="pt").input_ids.to(device)
        for tok in (c.tokenizer, c.tokenizer_2)
    ]  # fmt: skip

    def encode() -> tuple[Any, Any]:
        first, second = (
            te(i, output_hidden_states=True) for te, i in zip(encoders, ids, strict=True)
        )
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return hidden, second.text_embeds

    return encode


def step_floor_xl(args: argparse.Namespace) -> tuple[Callable[[], None], dict]:
    """The bare SDXL loop of step-ours' work (batch train.batch_size, doubled under prior)."""
    import torch
    import torch.nn.functional as F

    cfg = product.compose(run_overrides(args) + STEP_VARIANTS[args.variant])
    c = product.load_model(cfg)
    device, train = args.device, cfg.train
    for module in (c.unet, c.text_encoder, c.text_encoder_2):
        module.to(device)
    trained = trained_parameters(args, c)
    train_te, prior = args.variant in ("te", "prior"), args.variant == "prior"
    k = train.batch_size  # instance images; as many class images under prior
    n = k * (2 if prior else 1)
    encode = prompt_encoder(c, ["a photo of sks toy"] * k + ["a photo of toy"] * (n - k), device)
    with torch.no_grad():
        frozen = encode()
    r = cfg.data.resolution
    time_ids = torch.tensor([[r, r, 0, 0, r, r]] * n, dtype=torch.float32, device=device)
    latent = r // 2 ** (len(c.vae.config.block_out_channels) - 1)
    latents = torch.randn(n, c.unet.config.in_channels, latent, latent, device=device)
    optimizer = fastest_adamw(trained)
    scaler = torch.amp.GradScaler(device, enabled=args.precision == "fp16")
    unet, scheduler = c.unet, c.noise_scheduler
    offset = train.noise_offset if train.noise == "offset" else 0.0
    del c  # the VAE stays out of the floor's memory

    def step() -> None:
        noise = torch.randn_like(latents)
        if offset:
            noise = noise + offset * torch.randn(n, latents.shape[1], 1, 1, device=device)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (n,), device=device)
        noisy = scheduler.add_noise(latents, noise, t)
        with autocast(args):
            hidden, pooled = encode() if train_te else frozen
            added = {"text_embeds": pooled, "time_ids": time_ids}
            pred = unet(noisy, t, hidden, added_cond_kwargs=added, return_dict=False)[0]
        loss = F.mse_loss(pred[:k].float(), noise[:k])
        if prior:
            loss = loss + F.mse_loss(pred[k:].float(), noise[k:])
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    n_trained = sum(p.numel() for p in trained)
    base = count_params(unet) - (n_trained if args.variant == "lora" else 0)  # without the adapters
    return step, {"params": base, "trained": n_trained}
