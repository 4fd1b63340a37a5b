"""PSNR and SSIM against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from model import InputShapeError
from model.metrics import psnr, psnr_per_frame, ssim, ssim_per_frame


def test_psnr_of_a_known_error_on_unit_pixels() -> None:
    x = torch.zeros(1, 3, 2, 16, 16)
    y = x.clone()
    y[:, :, 0] += 0.2  # frame 0: error 0.1 on [0, 1] pixels, MSE 0.01 -> 20 dB
    y[:, :, 1] += 0.02  # frame 1: error 0.01, MSE 1e-4 -> 40 dB
    assert torch.allclose(psnr_per_frame(y, x), torch.tensor([[20.0, 40.0]]), atol=1e-3)
    assert abs(psnr(y, x).item() - 30.0) < 1e-3  # the mean over frames, as the official evaluation


def test_identical_videos_give_capped_psnr_and_unit_ssim() -> None:
    x = torch.rand(2, 3, 3, 16, 16) * 2 - 1
    assert (psnr(x, x) == 100.0).all()
    assert (ssim(x, x) - 1).abs().max() < 1e-5


def test_ssim_of_two_constant_frames_is_the_luminance_term() -> None:
    a, b = 0.2, 0.6  # on [0, 1]
    x = torch.full((1, 3, 1, 16, 16), a * 2 - 1)
    y = torch.full((1, 3, 1, 16, 16), b * 2 - 1)
    c1 = (0.01 * 1.0) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert abs(ssim_per_frame(y, x).item() - expected) < 1e-4


def test_ssim_falls_with_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 2, 32, 32, generator=g) * 2 - 1
    light = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    heavy = (x + 0.5 * torch.randn(x.shape, generator=g)).clamp(-1, 1)
    assert 1 > ssim(light, x).item() > ssim(heavy, x).item()
    assert not math.isnan(ssim(heavy, x).item())


def test_mismatched_shapes_are_refused() -> None:
    with pytest.raises(InputShapeError):
        psnr(torch.zeros(1, 3, 2, 8, 8), torch.zeros(1, 3, 3, 8, 8))
