"""The one media path: video (a path or bytes) -> sampled uint8 clips -> model input, and model output -> MP4.

The model's CLI, the pipeline, the service, training and evaluation all turn videos into clips
here, so one clip gives one latent whichever door it came in by.

    probe        what a container holds, from its header and first frame (PyAV): frames, rate, codec, sizes
    orientation  the display matrix: how a stored frame is turned and mirrored to be shown
    timing       each frame's presentation time (packet timestamps), the frames nearest given instants
    routing      which decoder backends take a video, by its codec and container; `auto` picks
    decoders     decord, torchcodec and PyAV behind one reader, scaling in the decoder, frames as shown
    reading      a video's wanted frames in chunks, from the first backend that reads them
    clips        ClipSettings, buckets, which frames make each clip; sample_clips
    frames       crop, uint8 resize, uint8 <-> the model's [-1, 1]
    mp4          frames -> H.264 MP4 bytes
"""

from __future__ import annotations

from ..errors import error_reason
from .clips import (
    REASON_TOO_SHORT,
    REASON_TRUNCATED,
    Bucket,
    Clip,
    ClipSettings,
    choose_bucket,
    plan_clip_starts,
    plan_timed_clips,
    resize_size,
    sample_clips,
)
from .decoders import FrameReader, decode_frames, open_frames
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
from .orientation import Orientation
from .probe import REASON_EMPTY, REASON_UNREADABLE, VideoInfo, VideoSource, probe_video
from .reading import DECODE_CHUNK_BYTES, frames_per_chunk
from .routing import (
    AUTO_ORDER,
    REASON_UNSUPPORTED_CODEC,
    REASON_UNSUPPORTED_CONTAINER,
    DecoderName,
    available_decoders,
    resolve_decoder,
    route_video,
)
from .timing import StreamTimes, read_stream_times

__all__ = [
    "AUTO_ORDER",
    "DECODE_CHUNK_BYTES",
    "REASON_EMPTY",
    "REASON_TOO_SHORT",
    "REASON_TRUNCATED",
    "REASON_UNREADABLE",
    "REASON_UNSUPPORTED_CODEC",
    "REASON_UNSUPPORTED_CONTAINER",
    "RGB_CHANNELS",
    "UINT8_MAX",
    "Bucket",
    "Clip",
    "ClipSettings",
    "DecoderName",
    "FrameReader",
    "Orientation",
    "ResizeMode",
    "StreamTimes",
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
    "plan_timed_clips",
    "probe_video",
    "read_stream_times",
    "resize_frames",
    "resize_size",
    "resolve_decoder",
    "route_video",
    "sample_clips",
    "to_model_input",
    "to_uint8_frames",
]
