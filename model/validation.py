"""Checks of tensors handed to the model, each failing with an `InputShapeError` that says what to fix."""

from __future__ import annotations

import torch
from torch import Tensor

from .config import RGB_CHANNELS, SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from .errors import InputShapeError

__all__ = [
    "check_chunk_size",
    "check_frame_count",
    "check_latent",
    "check_video",
    "check_video_chunk",
]

RGB = RGB_CHANNELS


def _check_tensor(x: object, what: str) -> Tensor:
    if not isinstance(x, Tensor):
        raise InputShapeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 5:
        raise InputShapeError(f"{what} must have shape (B, C, T, H, W), got {tuple(x.shape)}")
    if x.numel() == 0 and x.shape[2] != 0:
        raise InputShapeError(f"{what} is empty: shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise InputShapeError(f"{what} must be a floating-point tensor, got {x.dtype}")
    if x.numel() and not bool(torch.isfinite(x).all()):
        raise InputShapeError(f"{what} contains NaN or Inf values")
    return x


def check_video_chunk(x: object) -> Tensor:
    """A video or a stream's chunk: (B, 3, T, H, W) with T >= 0, H and W multiples of 8."""
    x = _check_tensor(x, "video")
    b, c, _, h, w = x.shape
    if c != RGB:
        raise InputShapeError(f"video must have {RGB} colour channels in dim 1, got {c} (shape {tuple(x.shape)})")
    if b == 0 or h == 0 or w == 0:
        raise InputShapeError(f"video is empty: shape {tuple(x.shape)}")
    if h % SPATIAL_COMPRESSION or w % SPATIAL_COMPRESSION:
        raise InputShapeError(
            f"video height and width must be multiples of {SPATIAL_COMPRESSION}, got {h}x{w}"
        )
    return x


def check_frame_count(frames: int) -> None:
    if frames < 1 or (frames - 1) % TEMPORAL_COMPRESSION:
        below = 1 + (max(frames, 1) - 1) // TEMPORAL_COMPRESSION * TEMPORAL_COMPRESSION
        raise InputShapeError(
            f"video must have T = 1 + {TEMPORAL_COMPRESSION}k frames (1, 5, 9, 13, 17, ...), got {frames}; "
            f"trim it to {below} frames"
        )


def check_video(x: object) -> Tensor:
    """A whole clip: a chunk whose frame count is 1 + 4k."""
    x = check_video_chunk(x)
    check_frame_count(x.shape[2])
    return x


def check_latent(z: object, latent_dim: int, *, allow_empty_time: bool = False) -> Tensor:
    """Latents (B, latent_dim, t, h, w) with t >= 1 (t >= 0 inside a stream)."""
    z = _check_tensor(z, "latent")
    b, c, t, h, w = z.shape
    if c != latent_dim:
        raise InputShapeError(f"latent must have {latent_dim} channels in dim 1, got {c} (shape {tuple(z.shape)})")
    if b == 0 or h == 0 or w == 0 or (t == 0 and not allow_empty_time):
        raise InputShapeError(f"latent is empty: shape {tuple(z.shape)}")
    return z


def check_chunk_size(size: object, name: str) -> None:
    """A chunk of frames or latents: a positive int (not a bool)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise InputShapeError(f"{name} must be a positive integer, got {size!r}")
