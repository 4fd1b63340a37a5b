"""What a request may ask and hold: clip geometries, source sizes and clip counts checked
against the limits, and the memory one `/encode` holds, computed from the container's header
and refused over `max_request_bytes`, all before a frame is decoded.

The footprint counts every copy the request path makes, in bytes:

    body         the upload (the joined body, the chunks it was joined from, decord's copy)
    decoder      the decoder's working set at the largest video stream's size, plus fixed overhead
    chunk        one chunk of frames scaled by the decoder (`model.media.frames_per_chunk`) and its crop
    clips        the uint8 clips at their target size
    model_input  the float32 clips the model reads, and one more clip while the batch is built

The model's own activations are not counted here: they are bounded by `encoder.chunk_frames`
(Causal Cache streaming) and measured in benchmarks/README.md. Every video stream of the
container counts: decord decodes the one it judges best, which need not be the first.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from model.errors import VideoDecodeError
from model.media import (
    REASON_UNREADABLE,
    RGB_CHANNELS,
    VideoInfo,
    frames_per_chunk,
    probe_video,
    resize_size,
)

from .errors import LimitExceeded

if TYPE_CHECKING:
    from model.media import ClipSettings

    from .settings import ServeSettings

__all__ = [
    "EncodeFootprint",
    "StreamSize",
    "check_clip_count",
    "check_encode_memory",
    "check_source_size",
    "encode_footprint",
    "limit_clip_settings",
    "probe_video_streams",
    "stream_size",
    "worst_encode_footprint",
]

MIB = 1024 * 1024
FLOAT32_BYTES = 4
# Fixed cost of a decode: decord's and torch's buffers, allocator slack. Measured: 24-60 MiB
# above the resident set before the call for 64x64 to 4K sources (2-core CPU, 2026-12-03).
FIXED_BYTES = 96 * MIB
# decord's working set in RGB frames at source size: measured 10 at 4K (247 MiB), 13 at 1080p,
# up to 37 at 720p (the fixed cost dominates there, and FIXED_BYTES covers it).
DECODER_FRAMES = 16
# Per frame of a chunk, at the decoder's (scaled) size: the decoder's RGB frame, its numpy copy,
# the crop's copy.
DECODED_COPIES = 3
# The joined body, the chunks it is joined from (while joining), decord's copy of the container.
BODY_COPIES = 3


@dataclass(frozen=True)
class StreamSize:
    """The largest video stream of a container: its frame size, and how many streams it has."""

    height: int
    width: int
    streams: int

    @property
    def pixels(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class EncodeFootprint:
    """Bytes an /encode request holds at its peak, term by term (see the module docstring)."""

    body: int
    decoder: int
    chunk: int
    clips: int
    model_input: int

    @property
    def total(self) -> int:
        return self.body + self.decoder + self.chunk + self.clips + self.model_input

    def largest(self) -> str:
        terms = asdict(self)
        return max(terms, key=terms.__getitem__)

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v / MIB:.0f}" for k, v in asdict(self).items())
        return f"{self.total / MIB:.0f} MiB ({parts})"


def probe_video_streams(video: bytes) -> StreamSize:
    """The largest frame size over every video stream, read from the container's headers.

    Raises VideoDecodeError when the bytes do not open, hold no video stream, or a stream does
    not state its size: what the probe cannot bound, the decoder is not given.
    """
    return stream_size(probe_video(video))


def stream_size(info: VideoInfo) -> StreamSize:
    """The largest frame size over the probed video's streams (see `probe_video_streams`)."""
    if any(h <= 0 or w <= 0 for h, w in info.stream_sizes):
        raise VideoDecodeError(REASON_UNREADABLE, "a video stream does not state its frame size")
    height, width = info.largest_frame_size
    return StreamSize(height, width, info.video_streams)


def encode_footprint(
    body_bytes: int,
    source_hw: tuple[int, int],
    clip_thw: tuple[int, int, int],
    num_clips: int,
    resize_mode: str,
) -> EncodeFootprint:
    """The footprint of cutting `num_clips` clips of (T, H, W) from a `source_hw` video."""
    frames, height, width = clip_thw
    source_frame = RGB_CHANNELS * source_hw[0] * source_hw[1]
    resized_hw = resize_size(source_hw, height, width, resize_mode)  # what the decoder scales to
    resized_frame = RGB_CHANNELS * resized_hw[0] * resized_hw[1]
    per_chunk = min(frames, frames_per_chunk(resized_hw))
    clip_elements = frames * height * width * RGB_CHANNELS
    return EncodeFootprint(
        body=BODY_COPIES * body_bytes,
        decoder=FIXED_BYTES + DECODER_FRAMES * source_frame,
        chunk=per_chunk * DECODED_COPIES * resized_frame,
        clips=num_clips * clip_elements,
        model_input=(num_clips + 1) * clip_elements * FLOAT32_BYTES,
    )


def worst_encode_footprint(
    max_body_bytes: int,
    max_source_pixels: int,
    max_frames: int,
    max_pixels: int,
    max_clips: int,
    max_aspect_ratio: float,
) -> EncodeFootprint:
    """The footprint of the worst request the limits allow: the largest body and source, the
    most frames and clips at the most pixels, and the source and clip at opposite extremes of
    the allowed aspect ratio (the crop's resize is then largest)."""
    source_h = math.isqrt(int(max_source_pixels / max_aspect_ratio))  # a wide source...
    source_w = int(source_h * max_aspect_ratio)
    clip_w = max(1, math.isqrt(int(max_pixels / max_aspect_ratio)))  # ...cut to a tall clip
    clip_h = int(clip_w * max_aspect_ratio)
    frames = max_frames
    return encode_footprint(
        max_body_bytes, (source_h, source_w), (frames, clip_h, clip_w), max_clips, "crop"
    )


def limit_clip_settings(clip: ClipSettings, settings: ServeSettings) -> ClipSettings:
    """Refuse geometries over the limits; cap `clip_mode=all` so a long video cannot fan out."""
    geometries = [(b.num_frames, b.height, b.width) for b in clip.buckets] or [
        (clip.num_frames, clip.height, clip.width)
    ]
    for frames, height, width in geometries:
        if max(height, width) > settings.max_aspect_ratio * min(height, width):
            raise LimitExceeded(
                f"clips of {height}x{width} asked; the longer side may be at most "
                f"{settings.max_aspect_ratio:g} times the shorter"
            )
        if frames > settings.max_frames:
            raise LimitExceeded(
                f"clips of {frames} frames asked; the limit is {settings.max_frames}"
            )
        if height * width > settings.max_pixels:
            raise LimitExceeded(
                f"clips of {height}x{width} = {height * width} pixels asked; "
                f"the limit is {settings.max_pixels} pixels per frame"
            )
    if clip.num_clips is not None and clip.num_clips > settings.max_clips:
        raise LimitExceeded(f"num_clips={clip.num_clips}; the limit is {settings.max_clips}")
    if clip.clip_mode == "all" and clip.num_clips is None:
        # One clip past the limit tells "too many" from "exactly the limit" (see check_clip_count).
        clip = clip.model_copy(update={"num_clips": settings.max_clips + 1})
    return clip


def check_source_size(stream: StreamSize, settings: ServeSettings) -> None:
    """Refuse a video whose largest stream is too large, or too narrow, to decode within bounds."""
    if stream.pixels > settings.max_source_pixels:
        raise LimitExceeded(
            f"the video is {stream.width}x{stream.height} = {stream.pixels} pixels per frame "
            f"(the largest of its {stream.streams} video streams); the limit is "
            f"{settings.max_source_pixels}"
        )
    longer, shorter = max(stream.height, stream.width), min(stream.height, stream.width)
    if longer > settings.max_aspect_ratio * shorter:
        raise LimitExceeded(
            f"the video is {stream.width}x{stream.height}; the longer side may be at most "
            f"{settings.max_aspect_ratio:g} times the shorter"
        )


def check_encode_memory(
    body_bytes: int, stream: StreamSize, clip: ClipSettings, settings: ServeSettings
) -> EncodeFootprint:
    """The request's footprint (its largest geometry, its most clips); refused over the budget."""
    geometries = [(b.num_frames, b.height, b.width) for b in clip.buckets] or [
        (clip.num_frames, clip.height, clip.width)
    ]
    clips = 1 if clip.clip_mode == "first" else min(clip.num_clips or 1, settings.max_clips)
    footprint = max(
        (
            encode_footprint(
                body_bytes, (stream.height, stream.width), geometry, clips, clip.resize_mode
            )
            for geometry in geometries
        ),
        key=lambda f: f.total,
    )
    if footprint.total > settings.max_request_bytes:
        raise LimitExceeded(
            f"this request would hold about {footprint.describe()} in memory; the budget per "
            f"request (max_request_bytes) is {settings.max_request_bytes // MIB} MiB: ask fewer "
            f"clips or frames, a smaller size, or send a smaller video (largest: {footprint.largest()})"
        )
    return footprint


def check_clip_count(count: int, settings: ServeSettings) -> None:
    """Refuse a request whose video yields more clips than one request may hold."""
    if count > settings.max_clips:
        raise LimitExceeded(
            f"the video yields more than {settings.max_clips} clips (the limit per request); "
            "set num_clips, or clip_mode=first or uniform"
        )
