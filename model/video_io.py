"""Reading a clip from a video file (decord) and writing frames to MP4 (PyAV), for people and tools.

Videos become tensors in [-1, 1], shape (1, 3, T, H, W); frames are resized so the short side
covers the target and centre-cropped.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import VideoDecodeError

__all__ = ["frames_to_tensor", "read_clip", "resize_center_crop", "tensor_to_frames", "write_mp4"]


def read_clip(path: str | Path, num_frames: int, stride: int = 1, start: int = 0,
              size: tuple[int, int] | None = None) -> tuple[Tensor, float]:
    """`num_frames` frames every `stride` from `start`; returns ((1, 3, T, H, W) in [-1, 1], fps)."""
    try:
        import decord
    except ImportError as err:  # decord ships wheels for x86-64 Linux, macOS and Windows
        raise VideoDecodeError("no_decoder", "decord is not installed") from err
    try:
        reader = decord.VideoReader(str(path), num_threads=1)
    except Exception as err:  # decord raises DECORDError and RuntimeError variants
        raise VideoDecodeError("unreadable", f"{path}: {err}") from err
    available = len(reader)
    last = start + (num_frames - 1) * stride
    if num_frames < 1 or stride < 1 or start < 0:
        raise VideoDecodeError("bad_request", "num_frames, stride must be >= 1 and start >= 0")
    if last >= available:
        raise VideoDecodeError(
            "too_short", f"{path} has {available} frames; {num_frames} frames at stride {stride} from {start} need {last + 1}"
        )
    try:
        frames = reader.get_batch(list(range(start, last + 1, stride))).asnumpy()  # (T, H, W, 3) uint8
    except Exception as err:
        raise VideoDecodeError("decode_failed", f"{path}: {err}") from err
    video = frames_to_tensor(frames)
    if size is not None:
        video = resize_center_crop(video, size)
    return video, float(reader.get_avg_fps())


def frames_to_tensor(frames: np.ndarray) -> Tensor:
    """uint8 (T, H, W, 3) -> float32 (1, 3, T, H, W) in [-1, 1]."""
    video = torch.from_numpy(np.ascontiguousarray(frames)).permute(3, 0, 1, 2).unsqueeze(0)
    return video.float().div_(127.5).sub_(1.0)


def resize_center_crop(video: Tensor, size: tuple[int, int]) -> Tensor:
    """Scale (1, 3, T, H, W) so it covers `size` = (height, width), then crop the centre."""
    target_h, target_w = size
    _, _, t, h, w = video.shape
    scale = max(target_h / h, target_w / w)
    new_h, new_w = max(target_h, math.ceil(h * scale)), max(target_w, math.ceil(w * scale))
    if (new_h, new_w) != (h, w):
        frames = video[0].transpose(0, 1)  # (T, 3, H, W)
        frames = F.interpolate(frames, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        video = frames.transpose(0, 1).unsqueeze(0).clamp_(-1.0, 1.0)
    top, left = (new_h - target_h) // 2, (new_w - target_w) // 2
    return video[:, :, :, top : top + target_h, left : left + target_w].contiguous()


def tensor_to_frames(video: Tensor) -> np.ndarray:
    """(1, 3, T, H, W) or (3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    if video.dim() == 5:
        video = video[0]
    frames = ((video.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().cpu().numpy()


def write_mp4(video: Tensor | np.ndarray, path: str | Path, fps: float = 24.0, crf: int = 18) -> Path:
    """Encodes frames with H.264 (yuv420p) through PyAV."""
    import av

    frames = video if isinstance(video, np.ndarray) else tensor_to_frames(video)
    t, h, w, _ = frames.shape
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=max(1, round(fps)))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
