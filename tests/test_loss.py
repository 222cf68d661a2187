"""The DreamBooth loss, min-SNR weighting and the regression target, on hand-made tensors."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from dreamsweep.models.tiny import SD_SCHEDULER_CONFIG
from dreamsweep.training.loss import (
    dreambooth_loss,
    min_snr_weights,
    offset_noise,
    regression_target,
)


def scheduler(prediction_type: str = "epsilon") -> DDPMScheduler:
    return DDPMScheduler.from_config({**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type})


def test_instance_and_prior_parts_are_separate_means():
    target = torch.zeros(4, 4, 2, 2)
    pred = torch.cat([torch.full((2, 4, 2, 2), 1.0), torch.full((2, 4, 2, 2), 2.0)])
    losses = dreambooth_loss(pred, target, n_instance=2, prior_weight=0.5)
    assert losses.instance.item() == pytest.approx(1.0)
    assert losses.prior.item() == pytest.approx(4.0)
    assert losses.total.item() == pytest.approx(1.0 + 0.5 * 4.0)


def test_without_class_images_the_loss_is_the_instance_loss():
    pred, target = torch.ones(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    losses = dreambooth_loss(pred, target, n_instance=2, prior_weight=1.0)
    assert losses.prior is None and losses.total.item() == pytest.approx(1.0)


def test_min_snr_weights_cap_easy_timesteps_only():
    s = scheduler()
    t = torch.tensor([1, 500, 999])
    w = min_snr_weights(s, t, gamma=5.0)
    assert w[0] < 1.0  # tiny noise: huge SNR, capped at gamma -> weight gamma/SNR
    assert w[2] == pytest.approx(1.0)  # noisy: SNR < gamma -> weight 1


def test_v_prediction_target_is_the_velocity():
    s = scheduler("v_prediction")
    latents, noise, t = torch.randn(2, 4, 2, 2), torch.randn(2, 4, 2, 2), torch.tensor([10, 900])
    assert torch.allclose(
        regression_target(s, latents, noise, t), s.get_velocity(latents, noise, t)
    )
    assert regression_target(scheduler(), latents, noise, t) is noise


def test_noise_offset_shifts_each_channel_by_a_constant():
    latents = torch.zeros(1, 4, 8, 8)
    plain = offset_noise(latents, 0.0, torch.Generator().manual_seed(0))
    shifted = offset_noise(latents, 0.1, torch.Generator().manual_seed(0))
    delta = shifted - plain
    assert torch.allclose(delta, delta[:, :, :1, :1].expand_as(delta), atol=1e-6)
    assert delta.abs().sum() > 0


def test_multires_noise_has_unit_variance_and_more_low_frequencies():
    """Pyramid noise: coarse noise added at lower resolutions, rescaled to unit variance."""
    from dreamsweep.training.loss import multires_noise

    latents = torch.zeros(8, 4, 32, 32)
    plain = torch.randn(latents.shape, generator=torch.Generator().manual_seed(0))
    pyramid = multires_noise(latents, 6, 0.3, torch.Generator().manual_seed(0))
    assert abs(pyramid.std().item() - 1) < 1e-4
    low = lambda x: torch.nn.functional.avg_pool2d(x, 8).var().item()  # noqa: E731
    assert low(pyramid) > 1.5 * low(plain)  # 8x8 block means vary more than white noise


def test_the_noise_setting_picks_the_noise():
    from types import SimpleNamespace

    from dreamsweep.training.loss import training_noise

    latents = torch.zeros(2, 4, 16, 16)
    settings = dict(noise_offset=0.1, multires_iterations=6, multires_discount=0.3)
    noises = {
        kind: training_noise(
            latents, SimpleNamespace(noise=kind, **settings), torch.Generator().manual_seed(0)
        )  # fmt: skip
        for kind in ("gaussian", "offset", "multires")
    }
    assert not torch.equal(noises["gaussian"], noises["offset"])
    assert not torch.equal(noises["gaussian"], noises["multires"])


def test_the_validation_loss_is_exactly_repeatable_and_moves_with_the_weights():
    """Fixed timesteps and noise: the same weights give the same number, bit for bit."""
    from dreamsweep.models.tiny import build_tiny
    from dreamsweep.training.latents import LatentBank
    from dreamsweep.training.val_loss import denoising_loss, timesteps

    c = build_tiny(seed=0, sample_size=16)
    mean = torch.randn(3, 1, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    bank = LatentBank(mean, torch.zeros_like(mean))
    context = torch.randn(3, 8, c.unet.config.cross_attention_dim)
    first = denoising_loss(c, bank, context, buckets=4)
    assert denoising_loss(c, bank, context, buckets=4) == first
    assert timesteps(1000, 4) == [125, 375, 625, 875]
    with torch.no_grad():
        c.unet.conv_out.bias += 0.1
    assert denoising_loss(c, bank, context, buckets=4) != first


@pytest.mark.parametrize("kernel", ["fused", "foreach"])
def test_clipping_matches_torch_clip_grad_norm(kernel):
    """The step clips as torch.nn.utils.clip_grad_norm_ does, whether the fused AdamW scales
    the gradients inside its kernel or they are scaled before a foreach AdamW."""
    from types import SimpleNamespace

    from accelerate import Accelerator

    from dreamsweep.training.loop import clip_gradients, optimizer_step

    def model_and_optimizer():
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Linear(16, 4))
        return model, torch.optim.AdamW(model.parameters(), lr=0.1, **{kernel: True})

    ours, optimizer = model_and_optimizer()
    reference, reference_optimizer = model_and_optimizer()
    s = SimpleNamespace(
        accelerator=Accelerator(cpu=True),
        trained=list(ours.parameters()),
        optimizer=optimizer,
        cfg=SimpleNamespace(optim=SimpleNamespace(max_grad_norm=0.5)),
    )
    for step in range(3):
        x = torch.randn(32, 8, generator=torch.Generator().manual_seed(step)) * 10
        for model in (ours, reference):
            model(x).square().mean().backward()
        clip_gradients(s)
        optimizer_step(s)
        assert torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5) > 0.5  # it clips
        reference_optimizer.step()
        for opt in (optimizer, reference_optimizer):
            opt.zero_grad(set_to_none=True)
    for a, b in zip(ours.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not hasattr(optimizer, "grad_scale")  # the clipping scale was for its step only
