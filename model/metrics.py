"""Reconstruction metrics on videos in [-1, 1]: PSNR and SSIM, per clip and per frame."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputShapeError

__all__ = ["psnr", "psnr_per_frame", "ssim", "ssim_per_frame"]

# Pixel range after mapping [-1, 1] to [0, 1].
DATA_RANGE = 1.0
# Above this PSNR a reconstruction is exact to float precision; reported instead of infinity.
PSNR_CAP_DB = 100.0
# SSIM constants of Wang et al. 2004: a Gaussian window of 11 pixels, sigma 1.5.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _to_unit(video: Tensor) -> Tensor:
    return ((video.float().clamp(-1.0, 1.0) + 1.0) / 2.0)


def _check_pair(prediction: Tensor, target: Tensor) -> None:
    if prediction.shape != target.shape or prediction.ndim != 5:
        raise InputShapeError(
            f"metrics need two (B, C, T, H, W) videos of one shape, got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )


def psnr_per_frame(prediction: Tensor, target: Tensor) -> Tensor:
    """(B, C, T, H, W) in [-1, 1] -> (B, T) PSNR in dB, on [0, 1] pixels, capped at 100 dB."""
    _check_pair(prediction, target)
    mse = (_to_unit(prediction) - _to_unit(target)).pow(2).mean(dim=(1, 3, 4))  # (B, T)
    return (10.0 * torch.log10(DATA_RANGE**2 / mse.clamp_min(1e-10))).clamp_max(PSNR_CAP_DB)


def psnr(prediction: Tensor, target: Tensor) -> Tensor:
    """(B,) PSNR per clip: the mean of its frames' PSNR, as the official evaluation computes it."""
    return psnr_per_frame(prediction, target).mean(dim=1)


def _gaussian_window(device: torch.device) -> Tensor:
    coords = torch.arange(SSIM_WINDOW, dtype=torch.float64, device=device) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(coords**2) / (2 * SSIM_SIGMA**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()  # (11, 11)


def ssim_per_frame(prediction: Tensor, target: Tensor) -> Tensor:
    """(B, C, T, H, W) in [-1, 1] -> (B, T) SSIM: Gaussian 11x11 window, valid region, channel mean."""
    _check_pair(prediction, target)
    b, c, t, h, w = prediction.shape
    if min(h, w) < SSIM_WINDOW:
        raise InputShapeError(f"SSIM needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {h}x{w}")
    x = _to_unit(prediction).transpose(1, 2).reshape(b * t * c, 1, h, w)  # one image per channel
    y = _to_unit(target).transpose(1, 2).reshape(b * t * c, 1, h, w)
    window = _gaussian_window(x.device)[None, None]  # (1, 1, 11, 11)

    def blur(image: Tensor) -> Tensor:
        return F.conv2d(image, window)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(1, 2, 3)).view(b, t, c).mean(dim=2)  # (B, T)


def ssim(prediction: Tensor, target: Tensor) -> Tensor:
    """(B,) SSIM per clip, the mean over its frames."""
    return ssim_per_frame(prediction, target).mean(dim=1)
