"""The paper's losses against hand computations: reconstruction, KL, WL, hinge, adaptive GAN weight."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from model import DiagonalGaussian
from model.training import LossConfig
from model.training.losses import (
    adaptive_gan_weight,
    discriminator_loss,
    generator_loss,
    hinge_d_loss,
    kl_loss,
    reconstruction_loss,
    wavelet_loss,
)
from model.wfvae import ForwardOutput

B, C, T, H, W = 2, 3, 5, 8, 8


def _video(seed: int) -> torch.Tensor:
    return torch.rand(B, C, T, H, W, generator=torch.Generator().manual_seed(seed)) * 2 - 1


class ConstantPerceptual(nn.Module):
    """A stand-in for LPIPS: distance 0.25 for every frame pair."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 1, 1, 1), 0.25)


def _forward_output(x: torch.Tensor, x_hat: torch.Tensor) -> ForwardOutput:
    g = torch.Generator().manual_seed(7)
    moments = torch.randn(B, 8, 2, 1, 1, generator=g)
    coeffs = [torch.randn(B, 12, 2, 2, 2, generator=g), torch.randn(B, 12, 2, 2, 2, generator=g),
              torch.randn(B, 24, 2, 1, 1, generator=g), torch.randn(B, 24, 2, 1, 1, generator=g)]
    return ForwardOutput(x_hat, DiagonalGaussian(moments), *coeffs)


def test_reconstruction_is_l1_summed_per_frame_and_averaged_over_frames() -> None:
    x, y = _video(0), _video(1)
    expected = (x - y).abs().sum() / (B * T)
    assert (reconstruction_loss(x, y) - expected).abs().max() < 1e-3
    expected_l2 = (x - y).pow(2).sum() / (B * T)
    assert (reconstruction_loss(x, y, "l2") - expected_l2).abs().max() < 1e-3


def test_perceptual_term_counts_at_every_pixel_of_its_frame_as_the_official_loss() -> None:
    x, y = _video(0), _video(1)
    with_p = reconstruction_loss(x, y, "l1", ConstantPerceptual(), perceptual_weight=0.1)
    # 0.1 * 0.25 added at each of the C*H*W values of every frame.
    assert (with_p - reconstruction_loss(x, y) - 0.1 * 0.25 * C * H * W).abs().max() < 1e-3


def test_kl_is_summed_per_sample_and_averaged_over_the_batch() -> None:
    moments = torch.randn(B, 8, 2, 3, 3, generator=torch.Generator().manual_seed(3))
    mean, logvar = moments.chunk(2, dim=1)
    expected = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum() / B
    assert (kl_loss(DiagonalGaussian(moments)) - expected).abs().max() < 1e-4


def test_wavelet_loss_is_l1_between_energy_flows_at_both_levels() -> None:
    out = _forward_output(_video(0), _video(1))
    expected = ((out.encoder_l1 - out.decoder_l1).abs().sum() + (out.encoder_l2 - out.decoder_l2).abs().sum()) / B
    assert (wavelet_loss(out) - expected).abs().max() < 1e-4


def test_hinge_loss_on_hand_values() -> None:
    real = torch.tensor([2.0, 0.5, -1.0])  # relu(1 - r): 0, 0.5, 2 -> mean 5/6
    fake = torch.tensor([-2.0, 0.0])  # relu(1 + f): 0, 1 -> mean 1/2
    assert abs(hinge_d_loss(real, fake).item() - 0.5 * (5 / 6 + 0.5)) < 1e-6


def test_adaptive_weight_is_the_ratio_of_gradient_norms_at_the_last_layer() -> None:
    w = torch.tensor([1.0, 2.0], requires_grad=True)
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([0.6, 0.8])
    nll, g = (w * a).sum(), (w * b).sum()  # gradients a (norm 5) and b (norm 1)
    weight = adaptive_gan_weight(nll, g, w, scale=0.5)
    assert abs(weight.item() - 0.5 * 5.0 / (1.0 + 1e-6)) < 1e-5
    assert not weight.requires_grad


def test_generator_loss_combines_terms_with_the_recipe_weights_before_the_gan_starts() -> None:
    x, x_hat = _video(0), _video(1)
    out = _forward_output(x, x_hat)
    config = LossConfig(perceptual_weight=0.0, disc_start=10)
    result = generator_loss(x, out, config, step=3, discriminator=nn.Identity(), last_layer=None)
    expected = reconstruction_loss(x, x_hat) + 1e-6 * kl_loss(out.posterior) + 0.1 * wavelet_loss(out)
    assert (result.total - expected).abs().max() < 1e-3
    assert "g_loss" not in result.terms


def test_generator_loss_adds_the_adaptively_weighted_gan_term_after_disc_start() -> None:
    x = _video(0)
    last = nn.Parameter(torch.full((C, 1, 1, 1, 1), 0.5))
    x_hat = x * 0.0 + last.sum() * 0.1  # the reconstruction depends on `last`
    out = _forward_output(x, x_hat)
    disc = nn.Conv3d(3, 1, 1)
    config = LossConfig(perceptual_weight=0.0, disc_start=0, disc_weight=0.5)
    result = generator_loss(x, out, config, step=0, discriminator=disc, last_layer=last)
    rec = reconstruction_loss(x, x_hat)
    g_loss = -disc(x_hat).mean()
    d_weight = adaptive_gan_weight(rec, g_loss, last, 0.5)
    expected = rec + 1e-6 * kl_loss(out.posterior) + 0.1 * wavelet_loss(out) + d_weight * g_loss
    assert (result.total - expected).abs().max() < 1e-3
    assert abs(result.terms["d_weight"] - d_weight.item()) < 1e-3 * max(1.0, d_weight.item())


def test_discriminator_loss_is_zero_before_disc_start_and_hinge_after() -> None:
    x, x_hat = _video(0), _video(1)
    disc = nn.Conv3d(3, 1, 1)
    before = discriminator_loss(disc, x, x_hat, LossConfig(disc_start=5), step=4)
    after = discriminator_loss(disc, x, x_hat, LossConfig(disc_start=5), step=5)
    assert before.total.item() == 0.0
    assert abs(after.total.item() - hinge_d_loss(disc(x), disc(x_hat)).item()) < 1e-6


def test_gan_without_last_layer_is_refused() -> None:
    x = _video(0)
    with pytest.raises(ValueError, match="last layer"):
        generator_loss(x, _forward_output(x, _video(1)), LossConfig(disc_start=0), 0, discriminator=nn.Conv3d(3, 1, 1))
