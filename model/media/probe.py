"""What a video holds, read from its container's header without decoding a frame (PyAV)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

from ..errors import VideoDecodeError

__all__ = ["REASON_EMPTY", "REASON_UNREADABLE", "VideoInfo", "VideoSource", "probe_video", "source_stream", "unreadable"]

REASON_EMPTY = "empty"  # zero bytes
REASON_UNREADABLE = "unreadable"  # not a container a decoder can open, or frames that fail to decode

VideoSource = bytes | str | Path  # container bytes, or a local path the decoder opens itself


@dataclass(frozen=True)
class VideoInfo:
    """The first video stream's frame count, rate and size, and every video stream's size."""

    frame_count: int
    fps: float
    frame_size: tuple[int, int]  # (height, width) of the stream clips are cut from
    stream_sizes: tuple[tuple[int, int], ...]  # (height, width) of each video stream, as stated

    @property
    def largest_frame_size(self) -> tuple[int, int]:
        """(height, width) of the container's largest video stream: a decoder may pick any."""
        return max(self.stream_sizes, key=lambda hw: hw[0] * hw[1])

    @property
    def video_streams(self) -> int:
        return len(self.stream_sizes)


def unreadable(error: BaseException, where: str = "") -> VideoDecodeError:
    """A VideoDecodeError for a decoder failure, keeping the first line of its message."""
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return VideoDecodeError(REASON_UNREADABLE, f"{where}{type(error).__name__}: {text}")


def source_stream(source: VideoSource) -> io.BytesIO | str:
    """What a decoder opens: a fresh in-memory file for bytes (each decoder reads it from 0), else the path."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise VideoDecodeError(REASON_EMPTY, "the video holds 0 bytes")
        return io.BytesIO(source)
    return str(source)


def _frame_count(container, stream) -> int:  # noqa: ANN001 (PyAV objects)
    """The stream's frame count from its index; containers without one have their packets counted."""
    if stream.frames > 0:
        return int(stream.frames)
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def probe_video(source: VideoSource) -> VideoInfo:
    """The header's account of `source`; raises VideoDecodeError when it is no video container."""
    import av  # imported here so importing the package stays cheap

    where = "" if isinstance(source, bytes | bytearray | memoryview) else f"{source}: "
    try:
        with av.open(source_stream(source)) as container:
            streams = list(container.streams.video)
            if not streams:
                raise VideoDecodeError(REASON_UNREADABLE, f"{where}the container holds no video stream")
            sizes = [(int(s.codec_context.height), int(s.codec_context.width)) for s in streams]
            first = streams[0]
            rate = first.average_rate or first.guessed_rate
            fps = float(rate) if rate else math.nan
            return VideoInfo(frame_count=_frame_count(container, first), fps=fps, frame_size=sizes[0],
                             stream_sizes=tuple(sizes))
    except VideoDecodeError:
        raise
    except Exception as error:  # av.error.FFmpegError and its kin, OSError, ValueError
        raise unreadable(error, where) from error
