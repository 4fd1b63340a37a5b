"""The one media path: video (a path or bytes) -> sampled uint8 clips -> model input, and model output -> MP4.

The model's CLI, the pipeline, the service, training and evaluation all turn videos into clips
here, so one clip gives one latent whichever door it came in by.

    decode   open a video with decord; errors with a reason (empty, unreadable, too_short)
    clips    ClipSettings, buckets, which frames make each clip; sample_clips
    frames   uint8 resize and crop; uint8 <-> the model's [-1, 1]
    mp4      frames -> H.264 MP4 bytes; a container's frame size
"""

from __future__ import annotations

from .clips import Bucket, Clip, ClipSettings, choose_bucket, plan_clip_starts, sample_clips
from .decode import (
    REASON_EMPTY,
    REASON_TOO_SHORT,
    REASON_UNREADABLE,
    VideoSource,
    error_reason,
    open_video,
    read_frames,
)
from .frames import (
    RGB_CHANNELS,
    UINT8_MAX,
    ResizeMode,
    covering_size,
    resize_frames,
    to_model_input,
    to_uint8_frames,
)
from .mp4 import encode_mp4, probe_frame_size

__all__ = [
    "REASON_EMPTY",
    "REASON_TOO_SHORT",
    "REASON_UNREADABLE",
    "RGB_CHANNELS",
    "UINT8_MAX",
    "Bucket",
    "Clip",
    "ClipSettings",
    "ResizeMode",
    "VideoSource",
    "choose_bucket",
    "covering_size",
    "encode_mp4",
    "error_reason",
    "open_video",
    "plan_clip_starts",
    "probe_frame_size",
    "read_frames",
    "resize_frames",
    "sample_clips",
    "to_model_input",
    "to_uint8_frames",
]
