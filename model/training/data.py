"""Clip samplers for training: random crops of decoded footage, synthetic motion, and mixtures.

A sampler draws a batch from a `torch.Generator` the trainer seeds from (seed, rank, step), so a
run that resumes from a checkpoint sees exactly the batches an uninterrupted run would have seen.
Decoding video files is not done here (it belongs to the pipeline); samplers take decoded frames.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..media import to_model_input

__all__ = ["ClipSampler", "FrameBankSampler", "MixtureSampler", "SyntheticMotionSampler"]


class ClipSampler(Protocol):
    def sample(self, generator: torch.Generator, batch_size: int, num_frames: int, height: int, width: int) -> Tensor:
        """A batch (B, 3, T, H, W) in [-1, 1]."""
        ...


def _randint(generator: torch.Generator, low: int, high: int) -> int:
    """Uniform in [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator).item())


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator).item())


class FrameBankSampler:
    """Random space-time crops from decoded videos held in memory.

    Each clip: a video (chance proportional to its frame count), a temporal stride from
    `strides`, a start frame, a square-ish window whose side is between the output size and
    `max_zoom_out` times it (so content is seen at several scales), an area-resize to the output
    size, and a horizontal flip with chance 1/2.
    """

    def __init__(self, videos: Sequence[Tensor], strides: Sequence[int] = (1, 2), max_zoom_out: float = 2.5) -> None:
        if not videos:
            raise ValueError("FrameBankSampler needs at least one video")
        for video in videos:
            if video.dtype != torch.uint8 or video.ndim != 4 or video.shape[-1] != 3:
                raise ValueError(f"videos must be (T, H, W, 3) uint8, got {tuple(video.shape)} {video.dtype}")
        self.videos = list(videos)
        self.strides = tuple(strides)
        self.max_zoom_out = max_zoom_out
        frames = torch.tensor([v.shape[0] for v in self.videos], dtype=torch.float64)
        self._weights = frames / frames.sum()

    def sample(self, generator: torch.Generator, batch_size: int, num_frames: int, height: int, width: int) -> Tensor:
        return torch.stack([self._one(generator, num_frames, height, width) for _ in range(batch_size)])

    def _one(self, generator: torch.Generator, num_frames: int, height: int, width: int) -> Tensor:
        video = self.videos[int(torch.multinomial(self._weights, 1, generator=generator).item())]
        total, src_h, src_w, _ = video.shape
        fitting = [s for s in self.strides if (num_frames - 1) * s + 1 <= total]
        if not fitting:
            raise ValueError(f"a video of {total} frames is too short for {num_frames}-frame clips")
        stride = fitting[_randint(generator, 0, len(fitting) - 1)]
        start = _randint(generator, 0, total - ((num_frames - 1) * stride + 1))
        # Window side relative to the output: at least 1 (never upsample), at most what fits.
        fit = min(src_h / height, src_w / width)
        zoom = _uniform(generator, 1.0, max(1.0, min(self.max_zoom_out, fit)))
        win_h, win_w = min(src_h, round(height * zoom)), min(src_w, round(width * zoom))
        top, left = _randint(generator, 0, src_h - win_h), _randint(generator, 0, src_w - win_w)
        clip = video[start : start + (num_frames - 1) * stride + 1 : stride, top : top + win_h, left : left + win_w]
        x = to_model_input(clip)[0].transpose(0, 1)  # (T, 3, h, w) in [-1, 1]
        if (win_h, win_w) != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        if _uniform(generator, 0.0, 1.0) < 0.5:
            x = x.flip(-1)
        return x.clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()  # (3, T, H, W)


class SyntheticMotionSampler:
    """Textured shapes moving over a panning textured background, with occasional brightness drift.

    Gives the model motion of known kinds (translation, occlusion, fades) that the few real
    videos do not cover.
    """

    def __init__(self, max_shapes: int = 4, max_speed: float = 3.0) -> None:
        self.max_shapes = max_shapes
        self.max_speed = max_speed

    def sample(self, generator: torch.Generator, batch_size: int, num_frames: int, height: int, width: int) -> Tensor:
        return torch.stack([self._one(generator, num_frames, height, width) for _ in range(batch_size)])

    def _texture(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        """A smooth colour field with some fine detail: (3, height, width) in about [-1, 1]."""
        coarse = torch.rand((1, 3, 4, 4), generator=generator) * 2 - 1
        medium = torch.rand((1, 3, 16, 16), generator=generator) * 2 - 1
        fine = torch.rand((1, 3, height // 2, width // 2), generator=generator) * 2 - 1
        field = (
            F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)
            + 0.5 * F.interpolate(medium, size=(height, width), mode="bicubic", align_corners=False)
            + _uniform(generator, 0.0, 0.4) * F.interpolate(fine, size=(height, width), mode="bilinear", align_corners=False)
        )
        return field[0].clamp(-1.0, 1.0)

    def _one(self, generator: torch.Generator, num_frames: int, height: int, width: int) -> Tensor:
        t = torch.arange(num_frames, dtype=torch.float32)  # (T,)
        margin = math.ceil(self.max_speed * num_frames) + 1
        canvas = self._texture(generator, height + 2 * margin, width + 2 * margin)  # (3, H', W')
        vy, vx = (_uniform(generator, -self.max_speed, self.max_speed) for _ in range(2))
        frames = torch.stack([
            canvas[:, margin + round(vy * i) : margin + round(vy * i) + height,
                   margin + round(vx * i) : margin + round(vx * i) + width]
            for i in range(num_frames)
        ])  # (T, 3, H, W)
        yy = torch.arange(height, dtype=torch.float32).view(1, height, 1)
        xx = torch.arange(width, dtype=torch.float32).view(1, 1, width)
        for _ in range(_randint(generator, 0, self.max_shapes)):
            cy, cx = _uniform(generator, 0, height), _uniform(generator, 0, width)
            sy, sx = (_uniform(generator, -self.max_speed, self.max_speed) for _ in range(2))
            ry, rx = _uniform(generator, 3, height / 3), _uniform(generator, 3, width / 3)
            centre_y = (cy + sy * t).view(-1, 1, 1)  # (T, 1, 1)
            centre_x = (cx + sx * t).view(-1, 1, 1)
            if _uniform(generator, 0, 1) < 0.5:  # ellipse, soft edge one pixel wide
                dist = ((yy - centre_y) / ry) ** 2 + ((xx - centre_x) / rx) ** 2
                mask = (1.0 - dist).mul(min(ry, rx)).clamp(0.0, 1.0)
            else:  # axis-aligned rectangle
                mask = ((ry - (yy - centre_y).abs()).clamp(0, 1) * (rx - (xx - centre_x).abs()).clamp(0, 1))
            texture = self._texture(generator, height, width) * 0.5 + (torch.rand((3, 1, 1), generator=generator) * 2 - 1) * 0.5
            frames = frames * (1 - mask.unsqueeze(1)) + texture.unsqueeze(0) * mask.unsqueeze(1)
        if _uniform(generator, 0, 1) < 0.25:  # a fade up or down over the clip
            gain = torch.linspace(1.0, _uniform(generator, 0.5, 1.5), num_frames).view(-1, 1, 1, 1)
            frames = (frames + 1) * gain - 1
        return frames.clamp(-1.0, 1.0).permute(1, 0, 2, 3).contiguous()  # (3, T, H, W)


class MixtureSampler:
    """Each clip of a batch from one of several samplers, chosen with the given chances."""

    def __init__(self, samplers: Sequence[ClipSampler], weights: Sequence[float]) -> None:
        if len(samplers) != len(weights) or not samplers:
            raise ValueError("MixtureSampler needs one weight per sampler, and at least one sampler")
        self.samplers = list(samplers)
        self._weights = torch.tensor(weights, dtype=torch.float64)

    def sample(self, generator: torch.Generator, batch_size: int, num_frames: int, height: int, width: int) -> Tensor:
        picks = torch.multinomial(self._weights, batch_size, replacement=True, generator=generator).tolist()
        return torch.cat([self.samplers[i].sample(generator, 1, num_frames, height, width) for i in picks])
