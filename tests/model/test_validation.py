"""Bad input gets a clear error that says what to fix."""

from __future__ import annotations

import pytest
import torch

from model import WFVAE, InputShapeError


@pytest.mark.parametrize(
    ("video", "message"),
    [
        (torch.zeros(3, 9, 32, 32), r"shape \(B, C, T, H, W\)"),
        (torch.zeros(1, 4, 9, 32, 32), "3 colour channels"),
        (torch.zeros(1, 3, 8, 32, 32), "T = 1 \\+ 4k .* got 8; trim it to 5 frames"),
        (torch.zeros(1, 3, 0, 32, 32), "got 0"),
        (torch.zeros(1, 3, 9, 30, 32), "multiples of 8, got 30x32"),
        (torch.zeros(0, 3, 9, 32, 32), "empty"),
        (torch.zeros(1, 3, 9, 32, 32, dtype=torch.uint8), "floating-point"),
        (torch.full((1, 3, 9, 32, 32), float("nan")), "NaN or Inf"),
        ([1, 2, 3], "torch.Tensor"),
    ],
)
def test_encode_rejects(tiny_vae: WFVAE, video, message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        tiny_vae.encode(video)


@pytest.mark.parametrize(
    ("latent", "message"),
    [
        (torch.zeros(1, 4, 2, 4, 4), "8 channels"),
        (torch.zeros(1, 8, 0, 4, 4), "empty"),
        (torch.full((1, 8, 2, 4, 4), float("inf")), "NaN or Inf"),
    ],
)
def test_decode_rejects(tiny_vae: WFVAE, latent, message: str) -> None:
    with pytest.raises(InputShapeError, match=message):
        tiny_vae.decode(latent)


def test_chunk_sizes_must_be_positive(tiny_vae: WFVAE) -> None:
    with pytest.raises(InputShapeError, match="chunk_frames must be a positive integer"):
        tiny_vae.encode(torch.zeros(1, 3, 5, 16, 16), chunk_frames=0)
    with pytest.raises(InputShapeError, match="chunk_latents must be a positive integer"):
        tiny_vae.decode(torch.zeros(1, 8, 2, 2, 2), chunk_latents=-1)
