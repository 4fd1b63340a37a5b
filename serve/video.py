"""Decoded frames to bytes: an H.264 MP4 (PyAV) or raw frames as safetensors."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
import torch

__all__ = ["frames_safetensors", "frames_to_uint8", "write_mp4"]

UINT8_MAX = 255.0
MP4_CODEC = "libx264"
MP4_PIXEL_FORMAT = (
    "yuv420p"  # what every player decodes; needs even sizes (ours are multiples of 8)
)


def frames_to_uint8(video: torch.Tensor) -> torch.Tensor:
    """The model's output (B, 3, T, H, W) in about [-1, 1] as (B, T, H, W, 3) uint8 frames."""
    pixels = ((video.float().clamp(-1.0, 1.0) + 1.0) * (UINT8_MAX / 2)).round()  # (B, 3, T, H, W)
    return pixels.to(torch.uint8).permute(0, 2, 3, 4, 1).contiguous()  # (B, T, H, W, 3)


def write_mp4(frames: np.ndarray, fps: float, crf: int = 18) -> bytes:
    """(T, H, W, 3) uint8 frames as an H.264 MP4 file."""
    import av  # imported here so importing the service stays cheap

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(MP4_CODEC, rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.pix_fmt = MP4_PIXEL_FORMAT
        stream.options = {"crf": str(crf)}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    return buffer.getvalue()


def frames_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Tensors as one safetensors file (contiguous CPU copies) with string metadata."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)
