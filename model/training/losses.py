"""WF-VAE's training losses (paper Sec. 3.3, Eq. 6-8): reconstruction (L1 + LPIPS), KL, the
WL loss on the energy flow, and the hinge GAN loss with the adaptive weight.

Reductions follow the official recipe, on which its weights (KL 1e-6, WL 0.1) were tuned:
the reconstruction is summed over (C, H, W) and averaged over frames, the KL and WL terms are
summed over everything and averaged over the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..distribution import DiagonalGaussian
from ..wfvae import ForwardOutput
from .config import LossConfig

__all__ = [
    "ADAPTIVE_WEIGHT_EPS",
    "ADAPTIVE_WEIGHT_MAX",
    "LossTerms",
    "adaptive_gan_weight",
    "discriminator_loss",
    "frames_as_images",
    "generator_loss",
    "hinge_d_loss",
    "kl_loss",
    "reconstruction_loss",
    "vanilla_d_loss",
    "wavelet_loss",
]

ADAPTIVE_WEIGHT_EPS = 1e-6
ADAPTIVE_WEIGHT_MAX = 1e6


class LossTerms(NamedTuple):
    total: Tensor  # scalar, to backpropagate
    terms: dict[str, float]  # each term as logged


def frames_as_images(video: Tensor) -> Tensor:
    """(B, C, T, H, W) -> (B*T, C, H, W)."""
    b, c, t, h, w = video.shape
    return video.transpose(1, 2).reshape(b * t, c, h, w)


def reconstruction_loss(
    target: Tensor, reconstruction: Tensor, kind: str = "l1",
    perceptual: nn.Module | None = None, perceptual_weight: float = 0.0,
) -> Tensor:
    """Per-pixel L1 (or L2) plus the frame's LPIPS distance at every pixel, summed per frame,
    averaged over frames."""
    x, x_hat = frames_as_images(target), frames_as_images(reconstruction)  # (N, C, H, W)
    per_pixel = (x - x_hat).abs() if kind == "l1" else (x - x_hat).pow(2)
    if perceptual is not None and perceptual_weight > 0:
        # (N, 1, 1, 1) broadcast over the frame's pixels, as the official loss does.
        per_pixel = per_pixel + perceptual_weight * perceptual(x, x_hat)
    return per_pixel.sum() / x.shape[0]


def kl_loss(posterior: DiagonalGaussian) -> Tensor:
    """KL to N(0, I), summed per sample, averaged over the batch."""
    return posterior.kl().mean()


def wavelet_loss(out: ForwardOutput) -> Tensor:
    """The WL loss: L1 between encoder and decoder energy-flow coefficients at both levels (Eq. 7)."""
    batch = out.reconstruction.shape[0]
    level1 = (out.encoder_l1 - out.decoder_l1).abs().sum()
    level2 = (out.encoder_l2 - out.decoder_l2).abs().sum()
    return (level1 + level2) / batch


def adaptive_gan_weight(nll: Tensor, g_loss: Tensor, last_layer: Tensor, scale: float = 1.0) -> Tensor:
    """||grad nll|| / (||grad g_loss|| + eps) at the decoder's last layer (VQGAN's balance)."""
    nll_grad = torch.autograd.grad(nll, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    weight = nll_grad.norm() / (g_grad.norm() + ADAPTIVE_WEIGHT_EPS)
    return weight.clamp(0.0, ADAPTIVE_WEIGHT_MAX).detach() * scale


def hinge_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.relu(1.0 - logits_real).mean() + F.relu(1.0 + logits_fake).mean())


def vanilla_d_loss(logits_real: Tensor, logits_fake: Tensor) -> Tensor:
    return 0.5 * (F.softplus(-logits_real).mean() + F.softplus(logits_fake).mean())


def generator_loss(
    target: Tensor,
    out: ForwardOutput,
    config: LossConfig,
    step: int,
    *,
    perceptual: nn.Module | None = None,
    discriminator: nn.Module | None = None,
    last_layer: Tensor | None = None,
) -> LossTerms:
    """The autoencoder's objective: rec + kl_w * KL + wl_w * WL (+ adaptive_w * GAN after disc_start)."""
    rec = reconstruction_loss(target, out.reconstruction, config.pixel_loss, perceptual, config.perceptual_weight)
    kl = kl_loss(out.posterior)
    wl = wavelet_loss(out) if config.wavelet_weight > 0 else rec.new_zeros(())
    total = rec + config.kl_weight * kl + config.wavelet_weight * wl
    terms = {"rec_loss": rec.item(), "kl_loss": kl.item(), "wl_loss": wl.item()}
    if discriminator is not None and config.gan_active(step):
        if last_layer is None:
            raise ValueError("the adaptive GAN weight needs the decoder's last layer weight")
        g_loss = -discriminator(out.reconstruction).mean()
        d_weight = adaptive_gan_weight(rec, g_loss, last_layer, config.disc_weight)
        total = total + d_weight * config.disc_factor * g_loss
        terms |= {"g_loss": g_loss.item(), "d_weight": d_weight.item()}
    terms["total_loss"] = total.item()
    return LossTerms(total, terms)


def discriminator_loss(
    discriminator: nn.Module, target: Tensor, reconstruction: Tensor, config: LossConfig, step: int
) -> LossTerms:
    """Hinge (or vanilla) loss on real clips against detached reconstructions."""
    logits_real = discriminator(target.detach())
    logits_fake = discriminator(reconstruction.detach())
    fn = hinge_d_loss if config.disc_loss == "hinge" else vanilla_d_loss
    factor = config.disc_factor if config.gan_active(step) else 0.0
    loss = factor * fn(logits_real, logits_fake)
    return LossTerms(loss, {
        "disc_loss": loss.item(),
        "logits_real": logits_real.mean().item(),
        "logits_fake": logits_fake.mean().item(),
    })
