"""Decoder backends: decord, torchcodec and PyAV behind one reader, frames scaled in the decoder and shown upright.

Each backend decodes the first video stream's frames at given indices, scaled to a given size
inside the decoder (FFmpeg's bilinear scaler, which filters over the whole footprint when it
shrinks): the RGB conversion and copies then run at the clip's size, not the source's. The
video's display matrix (`VideoInfo.orientation`) is applied to the scaled frames, so every
backend gives frames as players show them. decord is the fastest where it installs (x86-64);
torchcodec ships aarch64 wheels and decodes on NVDEC where a GPU is; PyAV installs everywhere
FFmpeg does. Which backend takes which video: `model.media.routing`.

A video is opened once (`open_frames`) and read in chunks of ascending indices: decord and
torchcodec keep their index of the stream, PyAV its place in the stream, so the chunks of a
video cost one pass through it, not one per chunk. A read gives fewer frames than asked where
the stream ends or breaks first: those before the first frame that did not decode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np

from ..errors import VideoDecodeError
from .orientation import Orientation
from .probe import (
    MP4_FAMILY,
    REASON_UNREADABLE,
    VideoInfo,
    VideoSource,
    first_line,
    probe_video,
    source_stream,
    unreadable,
)
from .routing import SEEKABLE_CONTAINERS, DecoderName, route_video
from .timing import StreamTimes, read_stream_times

__all__ = ["FrameReader", "decode_frames", "make_reader", "open_frames"]

Frames = np.ndarray  # (T, H, W, 3) uint8


class FrameReader(Protocol):
    """One open video: `read(indices)` gives those frames (any order, repeats allowed) at the
    reader's size, as shown; reads in ascending order cost one pass through the stream. Fewer
    frames than asked: the stream ended or broke before the next one (`stopped` says how)."""

    stopped: str

    def read(self, indices: list[int]) -> Frames: ...

    def close(self) -> None: ...


class _DecordReader:
    """decord 0.6 turns frames itself where its FFmpeg reads the turn from the container's
    header (the MP4 family's `rotate`), then scales them to the size given; elsewhere it gives
    them as stored. Mirrors it never applies (routing gives it no such MP4)."""

    def __init__(self, source: VideoSource, size: tuple[int, int], info: VideoInfo) -> None:
        import decord

        self._orientation = Orientation() if info.container == MP4_FAMILY else info.orientation
        self.stopped = ""
        height, width = self._orientation.stored_size(size)
        self._reader = decord.VideoReader(
            source_stream(source), ctx=decord.cpu(0), num_threads=1, width=width, height=height
        )

    def read(self, indices: list[int]) -> Frames:
        return self._orientation.apply(self._reader.get_batch(indices).asnumpy())  # (T, h, w, 3)

    def close(self) -> None:
        del self._reader


def _torchcodec_turns_frames() -> bool:
    """torchcodec 0.11 and later apply the container's display matrix turn themselves (and
    report it as `VideoStreamMetadata.rotation`), before their transforms."""
    from torchcodec.decoders import VideoStreamMetadata

    fields = getattr(VideoStreamMetadata, "__dataclass_fields__", {})  # a field, or an attribute
    return "rotation" in fields or hasattr(VideoStreamMetadata, "rotation")


class _TorchcodecReader:
    def __init__(self, source: VideoSource, size: tuple[int, int], info: VideoInfo) -> None:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize

        # routing gives torchcodec no mirrored video: a turn is all it may have to apply
        self._orientation = Orientation() if _torchcodec_turns_frames() else info.orientation
        self.stopped = ""
        data = source if isinstance(source, bytes) else str(source)
        self._decoder = VideoDecoder(
            data,
            dimension_order="NHWC",
            num_ffmpeg_threads=1,
            seek_mode="exact",
            transforms=[Resize(size=self._orientation.stored_size(size))],
        )

    def read(self, indices: list[int]) -> Frames:
        frames = self._decoder.get_frames_at(indices=indices).data.numpy()  # (T, h, w, 3)
        return self._orientation.apply(frames)

    def close(self) -> None:
        del self._decoder


# Frames ahead of PyAV's place beyond which it seeks to the keyframe before them instead of
# decoding its way there (H.264 keyframes commonly come every 1-10 s; seeking costs a pass over
# the packets, no decoding, once per video).
SEEK_AHEAD_FRAMES = 64


class _PyAVReader:
    """Decodes forward from where the last read stopped. A frame far ahead is reached by seeking
    to the keyframe before it (in containers where seeks are exact), an earlier one by starting
    again; after a seek, frames are placed by their presentation timestamps (the stream's
    packets, sorted, number them as decord does). A decoder error ends the stream there."""

    def __init__(self, source: VideoSource, size: tuple[int, int], info: VideoInfo) -> None:
        self._source, self._size, self._orientation = source, size, info.orientation
        self._may_seek = info.container in SEEKABLE_CONTAINERS
        self._container: Any = None
        self._times: StreamTimes | None = None
        self._index_of_pts: dict[int, int] = {}
        self._open()

    def _open(self) -> None:
        import av

        self.close()
        self._container = av.open(source_stream(self._source))
        self._stream = self._container.streams.video[0]
        # CPU time per clip is what counts; parallelism comes from tasks
        self._stream.thread_type, self._stream.thread_count = "NONE", 1
        self._frames = self._container.decode(self._stream)
        self._position = 0  # index of the frame `_frames` gives next
        self._by_pts = False  # frames are counted from 0 until a seek
        self._ended, self.stopped = False, ""

    def _keyframes(self) -> StreamTimes | None:
        """The packets' timestamps (read once, no decoding); None where they cannot number frames."""
        if self._times is None:
            self._times = read_stream_times(self._source)
            self._index_of_pts = self._times.index_of_pts
        return self._times if self._times.numbered and len(self._times.keyframes) else None

    def _go_to(self, index: int) -> None:
        """Places the decoder so that frame `index` comes within reach."""
        if index < self._position:
            self._open()
        if not self._may_seek or index - self._position <= SEEK_AHEAD_FRAMES:
            return
        times = self._keyframes()
        if times is None:
            return
        nearest = (
            int(np.searchsorted(times.keyframes, index, side="right")) - 1
        )  # the last at or before
        if nearest < 0 or times.keyframes[nearest] <= self._position:
            return  # no keyframe between here and there: decoding on is as fast
        keyframe = int(times.keyframes[nearest])
        self._container.seek(int(times.pts[keyframe]), stream=self._stream, backward=True)
        self._frames = self._container.decode(self._stream)
        self._position, self._by_pts = keyframe, True

    def _next_frame(self) -> Any:
        """The decoder's next frame; None where the stream has ended, or broken (`stopped` says
        how): a broken decoder is not read again, and an earlier frame starts a fresh one."""
        if self._ended:
            return None
        try:
            frame = next(self._frames, None)
        except Exception as error:  # av.error.FFmpegError: what follows cannot be numbered
            frame = None
            self.stopped = f"frame {self._position} does not decode ({first_line(error)})"
        else:
            if frame is None:
                self.stopped = f"the stream ends after {self._position} frames"
        self._ended = frame is None
        return frame

    def read(self, indices: list[int]) -> Frames:
        height, width = self._orientation.stored_size(self._size)
        if not indices:
            return np.empty((0, *self._size, 3), np.uint8)
        self._go_to(min(indices))
        wanted: dict[int, list[np.ndarray]] = {index: [] for index in indices}
        last = max(indices)
        while self._position <= last:
            frame = self._next_frame()
            if frame is None:
                break
            position = self._position
            if self._by_pts:
                position = self._index_of_pts.get(frame.pts, -1)
                if position < self._position:  # before the frames asked for (or not in the index)
                    continue
            if position in wanted:
                image = frame.reformat(
                    width=width, height=height, format="rgb24", interpolation="BILINEAR"
                )
                wanted[position].append(image.to_ndarray())
            self._position = position + 1
        frames = [image for index in indices for image in wanted[index][:1]]
        if not frames:
            return np.empty((0, *self._size, 3), np.uint8)
        return self._orientation.apply(np.stack(frames))  # (T, h, w, 3)

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None


_BACKENDS: dict[str, Callable[[VideoSource, tuple[int, int], VideoInfo], FrameReader]] = {
    "decord": _DecordReader,
    "torchcodec": _TorchcodecReader,
    "pyav": _PyAVReader,
}


def make_reader(
    backend: str, source: VideoSource, size: tuple[int, int], info: VideoInfo
) -> FrameReader:
    """`backend`'s reader of `source`, scaling to `size` (H, W) as shown; its own errors raised as they are."""
    return _BACKENDS[backend](source, size, info)


class _CheckedReader:
    """A reader whose library errors become VideoDecodeError (each library raises its own kinds)."""

    def __init__(self, reader: FrameReader, backend: str) -> None:
        self._reader, self.backend = reader, backend

    @property
    def stopped(self) -> str:
        return self._reader.stopped

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
def open_frames(
    source: VideoSource,
    size: tuple[int, int],
    decoder: DecoderName = "auto",
    info: VideoInfo | None = None,
) -> Iterator[FrameReader]:
    """`source`'s first video stream, open for reading frames scaled to `size` (H, W) as shown:
    the first backend of its route that opens it. `info`: its `probe_video`, where read already."""
    info = probe_video(source) if info is None else info
    failures = []
    for backend in route_video(info, decoder).backends:
        try:
            reader = make_reader(backend, source, size, info)
        except Exception as error:
            failures.append(f"{backend}: {first_line(error)}")
            continue
        try:
            yield _CheckedReader(reader, backend)
        finally:
            reader.close()
        return
    raise VideoDecodeError(REASON_UNREADABLE, "; ".join(failures))


def decode_frames(
    source: VideoSource,
    indices: list[int],
    size: tuple[int, int],
    decoder: DecoderName = "auto",
    info: VideoInfo | None = None,
) -> Frames:
    """Frames `indices` (any order, repeats allowed) of `source`'s first video stream at `size` (H, W), as shown."""
    with open_frames(source, size, decoder, info) as reader:
        return reader.read(indices)
