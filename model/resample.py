"""Temporal resampling of the level-2 path: 2x down in the encoder, 2x up in the decoder.

The decoder's upsampler interpolates between neighbouring latent frames, so the second output
frame of each input frame depends on the next input frame: in a stream it is held back until
the next chunk or the end of the stream (paper Sec. 3.3, Causal Cache).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .causal import CausalContext
from .fast_path.channels_last import CHANNELS_LAST, keeps_channels_last
from .layers import CausalConv3d

__all__ = ["TimeSpaceDownsample", "TimeSpaceUpsample"]


class TimeSpaceDownsample(nn.Module):
    """Halves T (causally), H and W: pad right and bottom, 3x3x3 causal convolution, stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor, ctx: CausalContext) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)), ctx)


@dataclass(frozen=True)
class _UpsampleTail:
    """The last input frame after the first, whose second output awaits the next frame."""

    last: Tensor | None  # (B, C, 1, H, W)


class TimeSpaceUpsample(nn.Module):
    """Doubles T (all frames after the first), H and W, then a causal 3x3x3 convolution.

    Frames r_0 .. r_{k-1} after the first become 2k frames: with trilinear interpolation
    (align_corners=False), out[2m] = r_{m-1}/4 + 3 r_m/4 and out[2m+1] = 3 r_m/4 + r_{m+1}/4,
    clamped at both ends; with nearest, both outputs are r_m.
    """

    def __init__(self, channels: int, t_interpolation: str) -> None:
        super().__init__()
        self.t_interpolation = t_interpolation
        self.cache_key = ""
        self.conv = CausalConv3d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor, ctx: CausalContext) -> Tensor:
        upsampled = self._upsample_time(x, ctx)  # frames stacked channels-first
        if keeps_channels_last(x):  # at the low side: a quarter of the copy after it
            upsampled = upsampled.contiguous(memory_format=CHANNELS_LAST)
        if upsampled.shape[2] == 0:
            b, c, _, h, w = x.shape
            return x.new_empty((b, self.conv.conv.out_channels, 0, 2 * h, 2 * w))
        upsampled = F.interpolate(upsampled, scale_factor=(1.0, 2.0, 2.0), mode="trilinear")
        return self.conv(upsampled, ctx)

    def _upsample_time(self, x: Tensor, ctx: CausalContext) -> Tensor:
        tail: _UpsampleTail | None = ctx.get(self.cache_key)
        head = []
        if tail is None:
            if x.shape[2] == 0:
                return x
            head, x, last = [x[:, :, :1]], x[:, :, 1:], None
        else:
            last = tail.last
        if self.t_interpolation == "nearest":
            ctx.put(self.cache_key, _UpsampleTail(None))
            return torch.cat([*head, x.repeat_interleave(2, dim=2)], dim=2)

        frames = x if last is None else torch.cat([last, x], dim=2)  # (B, C, L, H, W)
        pieces = list(head)
        if last is None and frames.shape[2] > 0:
            pieces.append(frames[:, :, :1])  # out[0] = r_0: the left end is clamped
        if frames.shape[2] > 1:
            a, b = frames[:, :, :-1], frames[:, :, 1:]
            second_of_a = 0.75 * a + 0.25 * b
            first_of_b = 0.25 * a + 0.75 * b
            pieces.append(torch.stack([second_of_a, first_of_b], dim=3).flatten(2, 3))
        pending = frames[:, :, -1:] if frames.shape[2] > 0 else None
        if ctx.final:
            if pending is not None:
                pieces.append(pending)  # the right end is clamped: out[2k-1] = r_{k-1}
            pending = None
        ctx.put(self.cache_key, _UpsampleTail(pending.clone() if pending is not None else None))
        return torch.cat(pieces, dim=2) if pieces else x[:, :, :0]
