"""Clip sampling: which frames of a video make each clip, at what size (the one path every door takes)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from ..errors import VideoDecodeError
from .frames import ResizeMode, covering_size
from .probe import VideoInfo, VideoSource, probe_video
from .reading import read_frames
from .routing import DecoderName
from .timing import frames_at_rate, last_start_at_rate, read_stream_times

__all__ = [
    "REASON_TOO_SHORT",
    "REASON_TRUNCATED",
    "Bucket",
    "Clip",
    "ClipSettings",
    "choose_bucket",
    "plan_clip_starts",
    "plan_timed_clips",
    "resize_size",
    "sample_clips",
    "too_short",
]

REASON_TOO_SHORT = "too_short"  # fewer frames than one clip spans
REASON_TRUNCATED = "truncated"  # enough frames stated, too few of them decode for one clip


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
        default=None,
        gt=0,
        description="if set, clip frame k is the source frame shown nearest k / target_fps after "
        "the clip's first (by the frames' timestamps), and frame_stride is not used",
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
        default="auto",
        description="video decoder: auto (fastest installed), decord, torchcodec or pyav",
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


@dataclass(frozen=True)
class Clip:
    """One sampled clip and where it came from."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    frame_indices: list[int]
    fps: float  # of the clip: target_fps, or the source's over the stride
    source_size: tuple[int, int]  # (height, width) the video is shown at
    target_size: tuple[int, int]  # (height, width) of the clip
    bucket: str | None  # "TxHxW" when buckets are used
    clip_index: int = 0
    decoder: str = ""  # the backend that decoded it
    frames_readable: int | None = (
        None  # where the video broke: frames 0..n-1 decode (None: it did not)
    )
    frames_stated: int = 0  # frames the container states

    def decode_notes(self) -> dict[str, int]:
        """What a row says about a video that broke before its end ({} for one that did not)."""
        if self.frames_readable is None:
            return {}
        return {"frames_readable": self.frames_readable, "frames_stated": self.frames_stated}


def choose_bucket(
    buckets: list[Bucket], source_hw: tuple[int, int], frames_available: int, stride: float
) -> Bucket:
    """The bucket nearest in aspect ratio; among equals the longest that fits, then the largest."""
    aspect = math.log(source_hw[1] / source_hw[0])

    def rank(bucket: Bucket) -> tuple[float, int, float, int]:
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
    return _uniform_starts(settings, first, last_start)


def _uniform_starts(settings: ClipSettings, first: int, last_start: int) -> list[int]:
    count = settings.num_clips or 1
    if count == 1:
        return [first]
    starts = np.linspace(first, last_start, count).round().astype(int).tolist()
    return sorted(set(starts))  # a short video yields fewer distinct clips, not duplicates


def plan_timed_clips(
    settings: ClipSettings, num_frames: int, seconds: np.ndarray, rate: float
) -> list[list[int]]:
    """The source frames of each clip at `rate` frames per second: frame k of a clip is the one
    shown nearest k / rate after the clip's first; clips follow one another as the stride
    rule's do. `seconds`: each source frame's time, ascending. Raises VideoDecodeError(too_short)."""
    if not math.isfinite((num_frames - 1) / rate):  # a rate such as 1e-308: no instant is a number
        raise OverflowError(f"a clip of {num_frames} frames at {rate:g} fps spans no finite time")
    first = settings.start_frame
    last_start = last_start_at_rate(seconds, num_frames, rate)
    if last_start < first:
        available = float(seconds[-1] - seconds[first]) if first < len(seconds) else 0.0
        raise VideoDecodeError(
            REASON_TOO_SHORT,
            f"{available:.3f} s of frames from frame {first}; a clip of {num_frames} frames at "
            f"{rate:g} fps spans {(num_frames - 1) / rate:.3f} s",
        )
    if settings.clip_mode == "all":
        spans: list[list[int]] = []
        start = first
        while start <= last_start and len(spans) < (settings.num_clips or len(seconds)):
            span = frames_at_rate(seconds, start, num_frames, rate)
            assert span is not None  # start <= last_start: it fits
            spans.append(span)
            start = span[-1] + 1
        return spans
    starts = (
        [first] if settings.clip_mode == "first" else _uniform_starts(settings, first, last_start)
    )
    return [span for start in starts if (span := frames_at_rate(seconds, start, num_frames, rate))]


def resize_size(
    source_hw: tuple[int, int], height: int, width: int, mode: ResizeMode
) -> tuple[int, int]:
    """(height, width) the decoder scales frames to: covering the target (crop), or the target (stretch)."""
    return (height, width) if mode == "stretch" else covering_size(source_hw, (height, width))


def _frame_seconds(video: VideoSource, info: VideoInfo) -> np.ndarray | None:
    """(N,) each frame's time after the first: from the packets' timestamps (one pass over them,
    no decoding), else frame / fps where they do not number the frames; None without either."""
    times = read_stream_times(video)
    if times.numbered and len(times.pts):
        return times.seconds
    if math.isfinite(info.fps) and info.fps > 0:
        return np.arange(info.frame_count, dtype=np.float64) / info.fps
    return None


def _clip_spans(
    video: VideoSource, settings: ClipSettings, info: VideoInfo
) -> tuple[list[list[int]], float, Bucket | None]:
    """The source frames of each clip, the clips' frame rate and their bucket."""
    rate = settings.target_fps
    seconds = _frame_seconds(video, info) if rate is not None else None
    total = info.frame_count if seconds is None else len(seconds)
    if seconds is not None and rate is not None:
        duration = float(seconds[-1])  # a Python float: a rate such as 5e-324 gives inf, no warning
        mean_fps = (total - 1) / duration if total > 1 and duration > 0 else info.fps
        stride = mean_fps / rate if math.isfinite(mean_fps) else 1.0
    else:
        stride = settings.frame_stride
    if settings.buckets:
        bucket: Bucket | None = choose_bucket(settings.buckets, info.frame_size, total, stride)
        num_frames = bucket.num_frames
    else:
        bucket, num_frames = None, settings.num_frames
    if seconds is not None and rate is not None:
        return plan_timed_clips(settings, num_frames, seconds, rate), rate, bucket
    step = settings.frame_stride
    starts = plan_clip_starts(settings, num_frames, total, step)
    spans = [list(range(start, start + (num_frames - 1) * step + 1, step)) for start in starts]
    return spans, info.fps / step, bucket


def sample_clips(
    video: VideoSource, settings: ClipSettings, info: VideoInfo | None = None
) -> list[Clip]:
    """Decode `video` (container bytes or a local path) and cut the clips `settings` asks for, in order.
    `info`: the video's `probe_video`, where the caller read it already.

    The frames every clip of the video needs are decoded once, scaled inside the decoder to the
    size that covers the clip (or to the clip's size, for `stretch`), as the video is shown
    (its display matrix applied), and centre-cropped (`model.media.reading`). A video that
    breaks before its end gives the clips whose frames all decode, marked (`Clip.frames_readable`);
    if none, VideoDecodeError(truncated) says how many frames decode.
    """
    info = probe_video(video) if info is None else info
    if info.frame_count == 0:
        raise too_short(0, settings.num_frames)
    spans, fps, bucket = _clip_spans(video, settings, info)
    height, width = (bucket.height, bucket.width) if bucket else (settings.height, settings.width)
    wanted = sorted({index for span in spans for index in span})
    scaled = resize_size(info.frame_size, height, width, settings.resize_mode)
    decoded = read_frames(video, info, wanted, scaled, (height, width), settings.decoder)
    frames, readable = decoded.frames, None
    if len(frames) < len(wanted):  # broke at frame wanted[len(frames)]: keep the clips before it
        readable = wanted[len(frames)]
        kept = [span for span in spans if span[-1] < readable]
        if not kept:
            raise VideoDecodeError(
                REASON_TRUNCATED,
                f"{readable} of the {info.frame_count} frames the video states decode (0..{readable - 1}); "
                f"its first clip needs frames {spans[0][0]}..{spans[0][-1]}: "
                + "; ".join(decoded.failures),
            )
        spans = kept
    row = {index: k for k, index in enumerate(wanted)}

    def frames_of(span: list[int]) -> np.ndarray:  # (T, H, W, 3): no gathering copy for one clip
        return frames if span == wanted else frames[[row[i] for i in span]]

    return [
        Clip(
            frames=frames_of(span),
            frame_indices=span,
            fps=fps,
            source_size=info.frame_size,
            target_size=(height, width),
            bucket=bucket.name if bucket else None,
            clip_index=clip_index,
            decoder=decoded.decoder,
            frames_readable=readable,
            frames_stated=info.frame_count,
        )
        for clip_index, span in enumerate(spans)
    ]
