"""The frames a video's clips need, decoded in chunks by the first backend of its route that reads them.

A backend that cannot open the video, or breaks on a frame, hands it to the next one on its
route (`model.media.routing`); the one that reads the most frames wins, and what the others
said is kept for the error row. Frames are decoded (scaled) DECODE_CHUNK_BYTES at a time and
cropped before the next ones: a clip's frames at the decoder's size never exist all at once,
whatever the target's aspect ratio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import VideoDecodeError
from .decoders import make_reader
from .frames import RGB_CHANNELS, center_window
from .probe import REASON_UNREADABLE, VideoInfo, VideoSource, first_line
from .routing import REASON_UNSUPPORTED_CODEC, DecoderName, route_video

__all__ = ["DECODE_CHUNK_BYTES", "DecodedFrames", "frames_per_chunk", "read_frames"]

log = logging.getLogger(__name__)

DECODE_CHUNK_BYTES = 16 * 2**20


def frames_per_chunk(scaled_hw: tuple[int, int]) -> int:
    """Frames decoded at once: DECODE_CHUNK_BYTES of frames at the decoder's size, at least one."""
    return max(1, DECODE_CHUNK_BYTES // (RGB_CHANNELS * scaled_hw[0] * scaled_hw[1]))


@dataclass(frozen=True)
class DecodedFrames:
    """The frames asked for, or those before the first that no backend decoded."""

    frames: np.ndarray  # (n, H, W, 3) uint8: frames wanted[:n], cropped
    decoder: str  # the backend that decoded them
    failures: tuple[str, ...]  # "decord: DECORDError: ..." for each backend that fell short


def _read_with(
    backend: str,
    video: VideoSource,
    info: VideoInfo,
    wanted: list[int],
    scaled: tuple[int, int],
    out: np.ndarray,
) -> tuple[int, str]:
    """Decodes `wanted` with one backend into `out`: (frames decoded before the first that was
    not, "" or what stopped it)."""
    height, width = out.shape[1:3]
    try:
        reader = make_reader(backend, video, scaled, info)
    except Exception as error:  # each library raises its own kinds
        return 0, f"does not open the video ({first_line(error)})"
    try:
        step = frames_per_chunk(scaled)
        for first in range(0, len(wanted), step):
            chunk = wanted[first : first + step]
            try:
                decoded = reader.read(chunk)  # (n, h', w', 3) uint8, n <= len(chunk)
            except Exception as error:  # the chunk broke: the frames before it stand
                return first, f"frames {chunk[0]}..{chunk[-1]} do not decode ({first_line(error)})"
            # one copy: the crop (and a turn, a view) straight into the clips' frames
            out[first : first + len(decoded)] = center_window(decoded, height, width)
            if len(decoded) < len(chunk):
                return first + len(decoded), reader.stopped or "the stream ends early"
    finally:
        reader.close()
    return len(wanted), ""


def read_frames(
    video: VideoSource,
    info: VideoInfo,
    wanted: list[int],
    scaled: tuple[int, int],
    crop: tuple[int, int],
    decoder: DecoderName = "auto",
) -> DecodedFrames:
    """Frames `wanted` (ascending) of `video`, scaled in the decoder to `scaled` (H, W, as shown)
    and centre-cropped to `crop`. Raises VideoDecodeError when no backend decodes the first."""
    failures: list[str] = []
    best = (0, np.empty((0, *crop, RGB_CHANNELS), np.uint8), "")
    for backend in route_video(info, decoder).backends:
        out = np.empty((len(wanted), *crop, RGB_CHANNELS), np.uint8)  # every frame a clip needs
        decoded, why = _read_with(backend, video, info, wanted, scaled, out)
        if decoded == len(wanted):
            if failures:
                log.info("%s read the video where %s", backend, "; ".join(failures))
            return DecodedFrames(out, backend, tuple(failures))
        failures.append(f"{backend}: {why}")
        if decoded > best[0]:
            best = (decoded, out[:decoded], backend)
    if best[0] == 0:
        # PyAV knows every codec its FFmpeg decodes: a codec it lacks is the likely cause
        reason = REASON_UNREADABLE if info.codec else REASON_UNSUPPORTED_CODEC
        codec = info.codec or "a codec PyAV's FFmpeg has no decoder for"
        raise VideoDecodeError(
            reason, f"{codec} in {info.container or 'an unknown container'}: " + "; ".join(failures)
        )
    return DecodedFrames(best[1], best[2], tuple(failures))
