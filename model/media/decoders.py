"""Decoder backends: decord, torchcodec and PyAV behind one call, chosen by what is installed.

Each backend decodes the first video stream's frames at given indices, scaled to a given size
inside the decoder (FFmpeg's bilinear scaler, which filters over the whole footprint when it
shrinks): the RGB conversion and copies then run at the clip's size, not the source's. decord is
the fastest where it installs (x86-64); torchcodec ships aarch64 wheels and decodes on NVDEC where
a GPU is; PyAV installs everywhere FFmpeg does.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from functools import cache
from typing import Literal

import numpy as np

from ..errors import VideoDecodeError
from .probe import VideoSource, source_stream, unreadable

__all__ = ["AUTO_ORDER", "DecoderName", "available_decoders", "decode_frames", "resolve_decoder"]

log = logging.getLogger(__name__)

DecoderName = Literal["auto", "decord", "torchcodec", "pyav"]
AUTO_ORDER: tuple[str, ...] = ("decord", "torchcodec", "pyav")  # fastest first
REASON_NO_DECODER = "no_decoder"

Frames = np.ndarray  # (T, H, W, 3) uint8


def _decord(source: VideoSource, indices: list[int], size: tuple[int, int]) -> Frames:
    import decord

    height, width = size
    reader = decord.VideoReader(source_stream(source), ctx=decord.cpu(0), num_threads=1, width=width, height=height)
    return reader.get_batch(indices).asnumpy()


def _pyav(source: VideoSource, indices: list[int], size: tuple[int, int]) -> Frames:
    import av

    height, width = size
    wanted = {index: [] for index in indices}  # an index may be asked for more than once
    last = max(indices)
    with av.open(source_stream(source)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "NONE"  # CPU time per clip is what counts; parallelism comes from tasks
        for position, frame in enumerate(container.decode(stream)):
            if position in wanted:
                image = frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR")
                wanted[position].append(image.to_ndarray())
            if position >= last:
                break
    frames = [image for index in indices for image in wanted[index][:1]]
    return np.stack(frames) if frames else np.empty((0, height, width, 3), np.uint8)


def _torchcodec(source: VideoSource, indices: list[int], size: tuple[int, int]) -> Frames:
    from torchcodec.decoders import VideoDecoder
    from torchcodec.transforms import Resize

    data = source if isinstance(source, bytes) else str(source)
    decoder = VideoDecoder(data, dimension_order="NHWC", num_ffmpeg_threads=1, seek_mode="exact",
                           transforms=[Resize(size=size)])  # FFmpeg's bilinear scaler, in the decoder
    return np.ascontiguousarray(decoder.get_frames_at(indices=indices).data.numpy())  # (T, h, w, 3)


_BACKENDS: dict[str, tuple[str, Callable[[VideoSource, list[int], tuple[int, int]], Frames]]] = {
    "decord": ("decord", _decord),
    "torchcodec": ("torchcodec", _torchcodec),
    "pyav": ("av", _pyav),
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


def decode_frames(source: VideoSource, indices: list[int], size: tuple[int, int], decoder: DecoderName = "auto") -> Frames:
    """Frames `indices` (any order, repeats allowed) of `source`'s first video stream at `size` (H, W)."""
    backend = _BACKENDS[resolve_decoder(decoder)][1]
    try:
        frames = backend(source, indices, size)
    except VideoDecodeError:
        raise
    except Exception as error:  # each library raises its own kinds
        raise unreadable(error, f"frames {min(indices)}..{max(indices)}: ") from error
    return frames
