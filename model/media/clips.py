"""Clip sampling: which frames of a video make each clip, at what size (the one path every door takes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from ..errors import VideoDecodeError
from .decoders import DecoderName, open_frames, resolve_decoder
from .frames import RGB_CHANNELS, ResizeMode, covering_size, crop_center
from .probe import VideoInfo, VideoSource, probe_video

__all__ = [
    "DECODE_CHUNK_BYTES",
    "REASON_TOO_SHORT",
    "Bucket",
    "Clip",
    "ClipSettings",
    "choose_bucket",
    "frames_per_chunk",
    "plan_clip_starts",
    "resize_size",
    "sample_clips",
    "too_short",
]

REASON_TOO_SHORT = "too_short"  # fewer frames than one clip spans
# Frames are decoded (scaled) this many bytes at a time and cropped before the next ones: a clip's
# frames at the decoder's size never exist all at once, whatever the target's aspect ratio.
DECODE_CHUNK_BYTES = 16 * 2**20


def too_short(frames: int, needed: int) -> VideoDecodeError:
    return VideoDecodeError(REASON_TOO_SHORT, f"{frames} frames available, a clip spans {needed}")


def _check_geometry(num_frames: int, height: int, width: int) -> None:
    if (num_frames - 1) % TEMPORAL_COMPRESSION:
        raise ValueError(f"num_frames must be 1 + 4k, got {num_frames}")
    if height % SPATIAL_COMPRESSION or width % SPATIAL_COMPRESSION:
        raise ValueError(f"height and width must be multiples of 8, got {height}x{width}")


class Bucket(BaseModel):
    """One clip geometry, written `TxHxW` (e.g. `17x256x256`)."""

    model_config = ConfigDict(frozen=True)

    num_frames: int = Field(ge=1)
    height: int = Field(gt=0)
    width: int = Field(gt=0)

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: object) -> object:
        if isinstance(value, str):
            parts = value.lower().split("x")
            if len(parts) != 3 or not all(p.strip().isdigit() for p in parts):
                raise ValueError(f"bucket {value!r} is not of the form TxHxW")
            t, h, w = (int(p) for p in parts)
            return {"num_frames": t, "height": h, "width": w}
        return value

    @model_validator(mode="after")
    def _check(self) -> Bucket:
        _check_geometry(self.num_frames, self.height, self.width)
        return self

    @property
    def name(self) -> str:
        return f"{self.num_frames}x{self.height}x{self.width}"


class ClipSettings(BaseModel):
    """How clips are cut from a video: length, stride, which clips, and their size."""

    model_config = ConfigDict(extra="forbid")

    num_frames: int = Field(default=17, ge=1, description="frames per clip, 1 + 4k")
    frame_stride: int = Field(default=1, ge=1, description="take every n-th source frame")
    target_fps: float | None = Field(
        default=None, gt=0, description="if set, the stride is round(source fps / target fps)"
    )
    start_frame: int = Field(default=0, ge=0, description="first source frame considered")
    clip_mode: Literal["first", "uniform", "all"] = "first"
    num_clips: int | None = Field(
        default=None, ge=1, description="clips per video for 'uniform'; a cap for 'all'"
    )
    height: int = Field(default=256, gt=0)
    width: int = Field(default=256, gt=0)
    buckets: list[Bucket] = Field(
        default_factory=list, description="if given, each video goes to its nearest bucket"
    )
    resize_mode: ResizeMode = Field(
        default="crop", description="crop: short side to size then centre crop; stretch: exact"
    )
    decoder: DecoderName = Field(
        default="auto", description="video decoder: auto (fastest installed), decord, torchcodec or pyav"
    )

    @field_validator("buckets", mode="before")
    @classmethod
    def _split_buckets(cls, value: object) -> object:
        if isinstance(value, str):  # "17x256x256,17x256x448" from a CLI or env
            return [part for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> ClipSettings:
        _check_geometry(self.num_frames, self.height, self.width)
        return self

    def stride_for(self, source_fps: float) -> int:
        """Source frames between consecutive clip frames."""
        if self.target_fps is None or not math.isfinite(source_fps) or source_fps <= 0:
            return self.frame_stride
        return max(1, round(source_fps / self.target_fps))


@dataclass(frozen=True)
class Clip:
    """One sampled clip and where it came from."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    frame_indices: list[int]
    fps: float  # of the clip, after striding
    source_size: tuple[int, int]  # (height, width) of the video
    target_size: tuple[int, int]  # (height, width) of the clip
    bucket: str | None  # "TxHxW" when buckets are used
    clip_index: int = 0
    decoder: str = ""  # the backend that decoded it


def choose_bucket(
    buckets: list[Bucket], source_hw: tuple[int, int], frames_available: int, stride: int
) -> Bucket:
    """The bucket nearest in aspect ratio; among equals the longest that fits, then the largest."""
    aspect = math.log(source_hw[1] / source_hw[0])

    def rank(bucket: Bucket) -> tuple[float, int, int, int]:
        distance = round(abs(math.log(bucket.width / bucket.height) - aspect), 9)
        fits = (bucket.num_frames - 1) * stride + 1 <= frames_available
        return (
            distance,
            0 if fits else 1,
            -bucket.num_frames if fits else bucket.num_frames,
            -bucket.height * bucket.width,
        )

    return min(buckets, key=rank)


def plan_clip_starts(settings: ClipSettings, num_frames: int, total: int, stride: int) -> list[int]:
    """First source frame of each clip; raises VideoDecodeError(too_short) when none fits."""
    span = (num_frames - 1) * stride + 1
    last_start = total - span
    if last_start < settings.start_frame:
        raise too_short(max(0, total - settings.start_frame), span)
    first = settings.start_frame
    if settings.clip_mode == "first":
        return [first]
    if settings.clip_mode == "all":
        starts = list(range(first, last_start + 1, span))
        return starts[: settings.num_clips] if settings.num_clips else starts
    count = settings.num_clips or 1
    if count == 1:
        return [first]
    starts = np.linspace(first, last_start, count).round().astype(int).tolist()
    return sorted(set(starts))  # a short video yields fewer distinct clips, not duplicates


def resize_size(source_hw: tuple[int, int], height: int, width: int, mode: ResizeMode) -> tuple[int, int]:
    """(height, width) the decoder scales frames to: covering the target (crop), or the target (stretch)."""
    return (height, width) if mode == "stretch" else covering_size(source_hw, (height, width))


def frames_per_chunk(scaled_hw: tuple[int, int]) -> int:
    """Frames decoded at once: DECODE_CHUNK_BYTES of frames at the decoder's size, at least one."""
    return max(1, DECODE_CHUNK_BYTES // (RGB_CHANNELS * scaled_hw[0] * scaled_hw[1]))


def sample_clips(video: VideoSource, settings: ClipSettings, info: VideoInfo | None = None) -> list[Clip]:
    """Decode `video` (container bytes or a local path) and cut the clips `settings` asks for, in order.
    `info`: the video's `probe_video`, where the caller read it already.

    The frames every clip of the video needs are decoded once, scaled inside the decoder to the
    size that covers the clip (or to the clip's size, for `stretch`), DECODE_CHUNK_BYTES at a
    time, and centre-cropped.
    """
    info = probe_video(video) if info is None else info
    if info.frame_count == 0:
        raise too_short(0, settings.num_frames)
    stride = settings.stride_for(info.fps)
    if settings.buckets:
        bucket: Bucket | None = choose_bucket(settings.buckets, info.frame_size, info.frame_count, stride)
        num_frames, height, width = bucket.num_frames, bucket.height, bucket.width
    else:
        bucket = None
        num_frames, height, width = settings.num_frames, settings.height, settings.width
    starts = plan_clip_starts(settings, num_frames, info.frame_count, stride)
    spans = [list(range(start, start + (num_frames - 1) * stride + 1, stride)) for start in starts]
    wanted = sorted({index for span in spans for index in span})
    decoder = resolve_decoder(settings.decoder)
    scaled = resize_size(info.frame_size, height, width, settings.resize_mode)
    frames = np.empty((len(wanted), height, width, RGB_CHANNELS), np.uint8)  # every frame a clip needs
    step = frames_per_chunk(scaled)
    with open_frames(video, scaled, decoder) as reader:  # one pass through the video for all chunks
        for first in range(0, len(wanted), step):
            chunk = wanted[first : first + step]
            decoded = reader.read(chunk)  # (n, h', w', 3) uint8
            if decoded.shape[0] != len(chunk):
                raise too_short(first + decoded.shape[0], len(wanted))
            frames[first : first + len(chunk)] = crop_center(decoded, height, width)
    row = {index: k for k, index in enumerate(wanted)}

    def frames_of(span: list[int]) -> np.ndarray:  # (T, H, W, 3): no gathering copy for one clip
        return frames if span == wanted else frames[[row[i] for i in span]]

    return [
        Clip(
            frames=frames_of(span),
            frame_indices=span,
            fps=info.fps / stride,
            source_size=info.frame_size,
            target_size=(height, width),
            bucket=bucket.name if bucket else None,
            clip_index=clip_index,
            decoder=decoder,
        )
        for clip_index, span in enumerate(spans)
    ]
