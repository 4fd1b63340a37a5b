"""Opening a video, from a path or from its bytes, with decord; failures become VideoDecodeErrors with a reason."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import VideoDecodeError

__all__ = [
    "REASON_EMPTY",
    "REASON_TOO_SHORT",
    "REASON_UNREADABLE",
    "VideoSource",
    "error_reason",
    "open_video",
    "read_frames",
    "too_short",
    "unreadable",
]

# Reasons carried by VideoDecodeError (and counted in the pipeline's error rows).
REASON_EMPTY = "empty"  # zero bytes
REASON_UNREADABLE = "unreadable"  # not a container the decoder can open, or frames that fail to decode
REASON_TOO_SHORT = "too_short"  # fewer frames than one clip spans

VideoSource = bytes | str | Path  # container bytes, or a local path the decoder opens itself


def error_reason(error: BaseException) -> str:
    """A short, stable code for an error, for counting error rows by reason."""
    return str(getattr(error, "reason", type(error).__name__))


def unreadable(error: BaseException, where: str = "") -> VideoDecodeError:
    """A VideoDecodeError for a decoder failure, keeping the first line of its message."""
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return VideoDecodeError(REASON_UNREADABLE, f"{where}{type(error).__name__}: {text}")


def too_short(frames: int, needed: int) -> VideoDecodeError:
    return VideoDecodeError(REASON_TOO_SHORT, f"{frames} frames available, a clip spans {needed}")


def open_video(source: VideoSource) -> Any:  # -> decord.VideoReader
    """A frame-accurate reader of `source`'s first video stream."""
    try:
        import decord  # imported here so importing the package stays cheap
    except ImportError as error:  # decord ships wheels for x86-64 Linux, macOS and Windows
        raise VideoDecodeError("no_decoder", "decord is not installed") from error
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise VideoDecodeError(REASON_EMPTY, "the video holds 0 bytes")
        stream: Any = io.BytesIO(source)
        where = ""
    else:
        stream, where = str(source), f"{source}: "
    try:
        return decord.VideoReader(stream, ctx=decord.cpu(0), num_threads=1)
    except Exception as error:  # decord raises RuntimeError, DECORDError or AssertionError
        raise unreadable(error, where) from error


def read_frames(reader: Any, indices: list[int]) -> np.ndarray:
    """Frames `indices` of an open reader as (T, h, w, 3) uint8."""
    try:
        frames = reader.get_batch(indices).asnumpy()
    except Exception as error:
        raise unreadable(error, f"frames {indices[0]}..{indices[-1]}: ") from error
    if frames.shape[0] != len(indices):
        raise too_short(frames.shape[0], len(indices))
    return frames
