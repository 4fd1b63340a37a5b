"""The one media path: video (a path or bytes) -> sampled uint8 clips -> model input, and model output -> MP4.

The model's CLI, the pipeline, the service, training and evaluation all turn videos into clips
here, so one clip gives one latent whichever door it came in by.

    probe     what a container holds, from its header (PyAV): frames, rate, every stream's size
    decoders  decord, torchcodec and PyAV behind one reader, scaling in the decoder; `auto` picks
    clips     ClipSettings, buckets, which frames make each clip; sample_clips
    frames    crop, uint8 resize, uint8 <-> the model's [-1, 1]
    mp4       frames -> H.264 MP4 bytes
"""

from __future__ import annotations

from ..errors import error_reason
from .clips import (
    DECODE_CHUNK_BYTES,
    REASON_TOO_SHORT,
    Bucket,
    Clip,
    ClipSettings,
    choose_bucket,
    frames_per_chunk,
    plan_clip_starts,
    resize_size,
    sample_clips,
)
from .decoders import (
    AUTO_ORDER,
    DecoderName,
    FrameReader,
    available_decoders,
    decode_frames,
    open_frames,
    resolve_decoder,
)
from .frames import (
    RGB_CHANNELS,
    UINT8_MAX,
    ResizeMode,
    covering_size,
    crop_center,
    resize_frames,
    to_model_input,
    to_uint8_frames,
)
from .mp4 import encode_mp4
from .probe import REASON_EMPTY, REASON_UNREADABLE, VideoInfo, VideoSource, probe_video

__all__ = [
    "AUTO_ORDER",
    "DECODE_CHUNK_BYTES",
    "REASON_EMPTY",
    "REASON_TOO_SHORT",
    "REASON_UNREADABLE",
    "RGB_CHANNELS",
    "UINT8_MAX",
    "Bucket",
    "Clip",
    "ClipSettings",
    "DecoderName",
    "FrameReader",
    "ResizeMode",
    "VideoInfo",
    "VideoSource",
    "available_decoders",
    "choose_bucket",
    "covering_size",
    "crop_center",
    "decode_frames",
    "encode_mp4",
    "error_reason",
    "frames_per_chunk",
    "open_frames",
    "plan_clip_starts",
    "probe_video",
    "resize_frames",
    "resize_size",
    "resolve_decoder",
    "sample_clips",
    "to_model_input",
    "to_uint8_frames",
]
