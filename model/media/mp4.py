"""Frames to an H.264 MP4 (PyAV)."""

from __future__ import annotations

import io
from fractions import Fraction

import numpy as np

__all__ = ["MP4_CODEC", "MP4_PIXEL_FORMAT", "encode_mp4"]

MP4_CODEC = "libx264"
MP4_PIXEL_FORMAT = (
    "yuv420p"  # what every player decodes; needs even sizes (ours are multiples of 8)
)
# Frame rates as exact fractions: NTSC's 30000/1001 stays itself instead of becoming 30.
FPS_DENOMINATOR_LIMIT = 1001


def encode_mp4(frames: np.ndarray, fps: float, crf: int = 18) -> bytes:
    """(T, H, W, 3) uint8 frames as the bytes of an H.264 MP4 file."""
    import av  # imported here so importing the package stays cheap

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(
            MP4_CODEC, rate=Fraction(fps).limit_denominator(FPS_DENOMINATOR_LIMIT)
        )
        stream.height, stream.width = int(frames.shape[1]), int(frames.shape[2])
        stream.pix_fmt = MP4_PIXEL_FORMAT
        stream.options = {"crf": str(crf)}
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))  # flush the encoder's delayed frames
    return buffer.getvalue()
