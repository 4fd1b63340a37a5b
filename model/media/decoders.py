"""Decoder backends: decord, torchcodec and PyAV behind one call, chosen by what is installed.

Each backend decodes the first video stream's frames at given indices, scaled to a given size
inside the decoder (FFmpeg's bilinear scaler, which filters over the whole footprint when it
shrinks): the RGB conversion and copies then run at the clip's size, not the source's. decord is
the fastest where it installs (x86-64); torchcodec ships aarch64 wheels and decodes on NVDEC where
a GPU is; PyAV installs everywhere FFmpeg does.

A video is opened once (`open_frames`) and read in chunks of ascending indices: decord and
torchcodec keep their index of the stream, PyAV its place in the stream, so the chunks of a
video cost one pass through it, not one per chunk.
"""

from __future__ import annotations

import bisect
import importlib.util
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any, Literal, Protocol

import numpy as np

from ..errors import VideoDecodeError
from .probe import VideoSource, source_stream, unreadable

__all__ = [
    "AUTO_ORDER",
    "DecoderName",
    "FrameReader",
    "available_decoders",
    "decode_frames",
    "open_frames",
    "resolve_decoder",
]

log = logging.getLogger(__name__)

DecoderName = Literal["auto", "decord", "torchcodec", "pyav"]
AUTO_ORDER: tuple[str, ...] = ("decord", "torchcodec", "pyav")  # fastest first
REASON_NO_DECODER = "no_decoder"

Frames = np.ndarray  # (T, H, W, 3) uint8


class FrameReader(Protocol):
    """One open video: `read(indices)` gives those frames (any order, repeats allowed) at the
    reader's size; reads in ascending order cost one pass through the stream."""

    def read(self, indices: list[int]) -> Frames: ...

    def close(self) -> None: ...


class _DecordReader:
    def __init__(self, source: VideoSource, size: tuple[int, int]) -> None:
        import decord

        height, width = size
        self._reader = decord.VideoReader(source_stream(source), ctx=decord.cpu(0), num_threads=1,
                                          width=width, height=height)

    def read(self, indices: list[int]) -> Frames:
        return self._reader.get_batch(indices).asnumpy()

    def close(self) -> None:
        del self._reader


class _TorchcodecReader:
    def __init__(self, source: VideoSource, size: tuple[int, int]) -> None:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize

        data = source if isinstance(source, bytes) else str(source)
        self._decoder = VideoDecoder(data, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact",
                                     transforms=[Resize(size=size)])  # FFmpeg's bilinear scaler, in the decoder

    def read(self, indices: list[int]) -> Frames:
        return np.ascontiguousarray(self._decoder.get_frames_at(indices=indices).data.numpy())  # (T, h, w, 3)

    def close(self) -> None:
        del self._decoder


# Frames ahead of PyAV's place beyond which it seeks to the keyframe before them instead of
# decoding its way there (H.264 keyframes commonly come every 1-10 s; seeking costs a pass over
# the packets, no decoding, once per video).
SEEK_AHEAD_FRAMES = 64


class _PyAVReader:
    """Decodes forward from where the last read stopped. A frame far ahead is reached by seeking
    to the keyframe before it, an earlier one by starting again; after a seek, frames are placed
    by their presentation timestamps (the stream's packets, sorted, number them as decord does)."""

    def __init__(self, source: VideoSource, size: tuple[int, int]) -> None:
        self._source, self._size = source, size
        self._container: Any = None
        self._keyframes: list[tuple[int, int]] | None = None  # (frame index, pts), ascending
        self._index_of_pts: dict[int, int] | None = None
        self._open()

    def _open(self) -> None:
        import av

        self.close()
        self._container = av.open(source_stream(self._source))
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "NONE"  # CPU time per clip is what counts; parallelism comes from tasks
        self._frames = self._container.decode(self._stream)
        self._position = 0  # index of the frame `_frames` gives next
        self._by_pts = False  # frames are counted from 0 until a seek

    def _index(self) -> bool:
        """Reads the packets' timestamps (no decoding) once; False where they cannot number frames."""
        if self._keyframes is None:
            import av

            with av.open(source_stream(self._source)) as container:
                packets = [(p.pts, p.is_keyframe) for p in container.demux(container.streams.video[0]) if p.size > 0]
            order = sorted(pts for pts, _ in packets if pts is not None)
            if len(order) != len(packets) or len(set(order)) != len(order):
                self._keyframes = []
                return False
            self._index_of_pts = {pts: index for index, pts in enumerate(order)}
            self._keyframes = sorted((self._index_of_pts[pts], pts) for pts, key in packets if key)
        return bool(self._keyframes)

    def _go_to(self, index: int) -> None:
        """Places the decoder so that frame `index` comes within reach."""
        if index < self._position:
            self._open()
        if index - self._position <= SEEK_AHEAD_FRAMES or not self._index():
            return
        assert self._keyframes is not None
        nearest = bisect.bisect_right(self._keyframes, (index, math.inf)) - 1  # the last at or before
        if nearest < 0 or self._keyframes[nearest][0] <= self._position:
            return  # no keyframe between here and there: decoding on is as fast
        keyframe, pts = self._keyframes[nearest]
        self._container.seek(pts, stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._position, self._by_pts = keyframe, True

    def read(self, indices: list[int]) -> Frames:
        height, width = self._size
        if not indices:
            return np.empty((0, height, width, 3), np.uint8)
        self._go_to(min(indices))
        wanted: dict[int, list[np.ndarray]] = {index: [] for index in indices}
        last = max(indices)
        while self._position <= last:
            frame = next(self._frames, None)
            if frame is None:  # the stream ended early: the caller sees fewer frames
                break
            position = self._position
            if self._by_pts:
                assert self._index_of_pts is not None
                position = self._index_of_pts.get(frame.pts, -1)
                if position < self._position:  # before the frames asked for (or not in the index)
                    continue
            if position in wanted:
                image = frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR")
                wanted[position].append(image.to_ndarray())
            self._position = position + 1
        frames = [image for index in indices for image in wanted[index][:1]]
        return np.stack(frames) if frames else np.empty((0, height, width, 3), np.uint8)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


_BACKENDS: dict[str, tuple[str, Callable[[VideoSource, tuple[int, int]], FrameReader]]] = {
    "decord": ("decord", _DecordReader),
    "torchcodec": ("torchcodec", _TorchcodecReader),
    "pyav": ("av", _PyAVReader),
}


@cache
def available_decoders() -> tuple[str, ...]:
    """The backends whose package is installed, fastest first; the missing ones are logged once."""
    found = []
    for name in AUTO_ORDER:
        module = _BACKENDS[name][0]
        try:
            importlib.import_module(module)
        except Exception as error:  # ImportError, or a wheel whose native libraries do not load
            log.info("video decoder %s unavailable (%s: %s)", name, type(error).__name__, error)
            continue
        found.append(name)
    return tuple(found)


def resolve_decoder(name: DecoderName) -> str:
    """The backend `name` stands for: `auto` takes the fastest installed; a named one must be installed."""
    installed = available_decoders()
    if name == "auto":
        if not installed:
            raise VideoDecodeError(REASON_NO_DECODER, f"no video decoder installed; install one of {', '.join(AUTO_ORDER)}")
        return installed[0]
    if name not in installed:
        spec = importlib.util.find_spec(_BACKENDS[name][0])
        why = "not installed" if spec is None else "installed but failed to load"
        raise VideoDecodeError(REASON_NO_DECODER, f"video decoder {name!r} is {why}; installed: {', '.join(installed) or 'none'}")
    return name


class _CheckedReader:
    """A reader whose library errors become VideoDecodeError (each library raises its own kinds)."""

    def __init__(self, reader: FrameReader) -> None:
        self._reader = reader

    def read(self, indices: list[int]) -> Frames:
        try:
            return self._reader.read(indices)
        except VideoDecodeError:
            raise
        except Exception as error:
            where = f"frames {min(indices)}..{max(indices)}: " if indices else ""
            raise unreadable(error, where) from error

    def close(self) -> None:
        self._reader.close()


@contextmanager
def open_frames(source: VideoSource, size: tuple[int, int], decoder: DecoderName = "auto") -> Iterator[FrameReader]:
    """`source`'s first video stream, open for reading frames scaled to `size` (H, W) in the decoder."""
    make = _BACKENDS[resolve_decoder(decoder)][1]
    try:
        reader = make(source, size)
    except VideoDecodeError:
        raise
    except Exception as error:
        raise unreadable(error) from error
    try:
        yield _CheckedReader(reader)
    finally:
        reader.close()


def decode_frames(source: VideoSource, indices: list[int], size: tuple[int, int], decoder: DecoderName = "auto") -> Frames:
    """Frames `indices` (any order, repeats allowed) of `source`'s first video stream at `size` (H, W)."""
    with open_frames(source, size, decoder) as reader:
        return reader.read(indices)
