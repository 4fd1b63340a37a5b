"""Clip sampling: decode a video from bytes with decord into fixed-size uint8 clips (shared with serve)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from model.errors import InputShapeError, VideoDecodeError

TEMPORAL_COMPRESSION = 4  # WF-VAE keeps the first frame and compresses the rest 4x in time
SPATIAL_COMPRESSION = 8  # and 8x in height and width
RGB_CHANNELS = 3
UINT8_MAX = 255.0

__all__ = [
    "REASON_EMPTY",
    "REASON_TOO_SHORT",
    "REASON_UNREADABLE",
    "DECODE_CHUNK_BYTES",
    "Bucket",
    "Clip",
    "ClipSettings",
    "choose_bucket",
    "clip_to_tensor",
    "error_reason",
    "frames_per_chunk",
    "plan_clip_starts",
    "resize_size",
    "sample_clips",
]


# Reasons carried by VideoDecodeError (and counted in the pipeline's error rows).
REASON_EMPTY = "empty"  # zero bytes
REASON_UNREADABLE = "unreadable"  # not a container decord can open, or frames that fail to decode
REASON_TOO_SHORT = "too_short"  # fewer frames than one clip spans


def _unreadable(error: BaseException, where: str = "") -> VideoDecodeError:
    """A VideoDecodeError for a decord failure, keeping the first line of its message."""
    text = (str(error).strip().splitlines() or [""])[0][:200]
    return VideoDecodeError(REASON_UNREADABLE, f"{where}{type(error).__name__}: {text}")


def _too_short(frames: int, needed: int) -> VideoDecodeError:
    return VideoDecodeError(REASON_TOO_SHORT, f"{frames} frames available, a clip spans {needed}")


def error_reason(error: BaseException) -> str:
    """A short, stable code for an error, for counting error rows by reason."""
    return str(getattr(error, "reason", type(error).__name__))


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


def _check_geometry(num_frames: int, height: int, width: int) -> None:
    if (num_frames - 1) % TEMPORAL_COMPRESSION:
        raise ValueError(f"num_frames must be 1 + 4k, got {num_frames}")
    if height % SPATIAL_COMPRESSION or width % SPATIAL_COMPRESSION:
        raise ValueError(f"height and width must be multiples of 8, got {height}x{width}")


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
    resize_mode: Literal["crop", "stretch"] = Field(
        default="crop", description="crop: short side to size then centre crop; stretch: exact"
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

    def geometry_id(self) -> str:
        """A stable text of every setting that changes what a clip holds (for keys)."""
        return self.model_dump_json()


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
        raise _too_short(max(0, total - settings.start_frame), span)
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


# --- bounded memory: frames are decoded and resized in chunks, as uint8 -----------------------
# A clip is decoded and resized a chunk of frames at a time, so a 4K source never exists as a
# whole clip at source resolution, and resized as uint8 (torch's integer path: within 1 level of
# the float path, 15x faster), so no float copy at source size exists either. serve/ computes a
# request's memory from these (serve/memory.py).
DECODE_CHUNK_BYTES = 16 * 1024 * 1024  # RGB frames at source size (and at the resize's size)


def resize_size(source_hw: tuple[int, int], height: int, width: int, mode: str) -> tuple[int, int]:
    """(height, width) frames are resized to before the centre crop (crop), or the target (stretch)."""
    h, w = source_hw
    if mode == "stretch" or (h, w) == (height, width):
        return height, width
    scale = max(height / h, width / w)
    return max(height, round(h * scale)), max(width, round(w * scale))


def frames_per_chunk(source_hw: tuple[int, int], resized_hw: tuple[int, int]) -> int:
    """Frames decoded and resized at once: DECODE_CHUNK_BYTES of the larger of the two sizes."""
    frame_bytes = RGB_CHANNELS * max(source_hw[0] * source_hw[1], resized_hw[0] * resized_hw[1])
    return max(1, DECODE_CHUNK_BYTES // frame_bytes)


def _resize(frames: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """Resize (T, h, w, 3) uint8 frames to (T, height, width, 3): short side + centre crop, or exact."""
    t, h, w, _ = frames.shape
    if (h, w) == (height, width):
        return frames
    size = resize_size((h, w), height, width, mode)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)  # (T, 3, h, w) uint8, channels-last view
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    top, left = (size[0] - height) // 2, (size[1] - width) // 2
    x = x[:, :, top : top + height, left : left + width]  # (T, 3, H, W) uint8
    return x.permute(0, 2, 3, 1).contiguous().numpy()  # (T, H, W, 3)


def _decode_resized(
    reader, indices: list[int], source_hw: tuple[int, int], height: int, width: int, mode: str
) -> np.ndarray:
    """Frames `indices` of `reader` as (T, height, width, 3) uint8, a bounded chunk at a time."""
    step = frames_per_chunk(source_hw, resize_size(source_hw, height, width, mode))
    out = np.empty((len(indices), height, width, RGB_CHANNELS), np.uint8)
    filled = 0
    for start in range(0, len(indices), step):
        chunk = indices[start : start + step]
        try:
            frames = reader.get_batch(chunk).asnumpy()  # (t, h, w, 3) uint8
        except Exception as error:
            raise _unreadable(error, f"frames {chunk[0]}..{chunk[-1]}: ") from error
        out[filled : filled + len(frames)] = _resize(frames, height, width, mode)
        filled += len(frames)
    if filled != len(indices):
        raise _too_short(filled, len(indices))
    return out


def _open(video: bytes):  # -> decord.VideoReader
    import decord  # imported here so importing this module stays cheap

    if len(video) == 0:
        raise VideoDecodeError(REASON_EMPTY, "the video holds 0 bytes")
    try:
        return decord.VideoReader(io.BytesIO(video), ctx=decord.cpu(0), num_threads=1)
    except Exception as error:  # decord raises RuntimeError, DECORDError or AssertionError
        raise _unreadable(error) from error


def sample_clips(video: bytes, settings: ClipSettings) -> list[Clip]:
    """Decode `video` (container bytes) and cut the clips `settings` asks for, in order."""
    reader = _open(video)
    try:
        total = len(reader)
        first_frame = reader[0].asnumpy() if total else None
    except Exception as error:
        raise _unreadable(error) from error
    if first_frame is None:
        raise _too_short(0, settings.num_frames)
    source_hw = (int(first_frame.shape[0]), int(first_frame.shape[1]))
    source_fps = float(reader.get_avg_fps())
    stride = settings.stride_for(source_fps)
    if settings.buckets:
        bucket: Bucket | None = choose_bucket(settings.buckets, source_hw, total, stride)
        num_frames, height, width = bucket.num_frames, bucket.height, bucket.width
    else:
        bucket = None
        num_frames, height, width = settings.num_frames, settings.height, settings.width
    starts = plan_clip_starts(settings, num_frames, total, stride)
    clips = []
    for clip_index, start in enumerate(starts):
        indices = list(range(start, start + (num_frames - 1) * stride + 1, stride))
        clips.append(
            Clip(
                frames=_decode_resized(
                    reader, indices, source_hw, height, width, settings.resize_mode
                ),
                frame_indices=indices,
                fps=source_fps / stride,
                source_size=source_hw,
                target_size=(height, width),
                bucket=bucket.name if bucket else None,
                clip_index=clip_index,
            )
        )
    return clips


def clip_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames to the model's input: (1, 3, T, H, W) float32 in [-1, 1]."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != RGB_CHANNELS:
        raise InputShapeError(
            f"expected (T, H, W, 3) uint8 frames, got {frames.shape} {frames.dtype}"
        )
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2)  # (3, T, H, W)
    return (x.float() / (UINT8_MAX / 2) - 1.0).unsqueeze(0)  # (1, 3, T, H, W)
