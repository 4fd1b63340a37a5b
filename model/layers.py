"""Building blocks of WF-VAE: causal and per-frame convolutions, norms, residual and attention blocks.

Every block takes and returns video tensors (B, C, T, H, W). Blocks that look back in time take a
`CausalContext` and keep their tail frames under their own `cache_key`, set once by the model.
Module and parameter names follow the official checkpoints key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .causal import CausalContext, FrameMaker, causal_window, convolution_layout, frames_after
from .fast_path.fused_norm import layer_norm_silu_frames
from .fast_path.policy import active, winograd_for
from .fast_path.winograd import winograd_conv3d

__all__ = [
    "CausalConv3d",
    "ChannelNorm",
    "FrameAttention",
    "FrameConv2d",
    "FrameDownsample",
    "FrameUpsample",
    "ResnetBlock2D",
    "ResnetBlock3D",
    "convolve_activation",
    "tracks_grad",
]


class FrameConv2d(nn.Conv2d):
    """A 2D convolution applied to every frame; runs as a (1, k, k) 3D convolution, no reshapes."""

    def forward(self, x: Tensor) -> Tensor:  # (B, C, T, H, W)
        winograd = winograd_for(self, x)
        if winograd is not None:
            return winograd_conv3d(x, self.weight.unsqueeze(2), self.bias, winograd)
        pad = self.padding if isinstance(self.padding, tuple) else (self.padding, self.padding)
        return F.conv3d(
            x,
            self.weight.unsqueeze(2),
            self.bias,
            stride=(1, *self.stride),
            padding=(0, *pad),
        )


class CausalConv3d(nn.Module):
    """3D convolution padded in time by repeating the first frame (official `CausalConv3d`)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 stride: int = 1, padding: int = 0, bias: bool = True) -> None:
        super().__init__()
        self.kernel_t = kernel_size
        self.stride_t = stride
        self.cache_key = ""
        self.conv = nn.Conv3d(
            in_channels, out_channels, kernel_size, stride=stride, padding=(0, padding, padding), bias=bias
        )

    def forward(self, x: Tensor, ctx: CausalContext) -> Tensor:
        return self.convolve(self.window(x, ctx))

    def window(self, x: Tensor, ctx: CausalContext, make_frames: FrameMaker = frames_after) -> Tensor:
        """The causally padded frames this convolution reads, made from `x` by `make_frames`."""
        if self.kernel_t == 1:
            # No padding in time: the plain input is read in place, only a made one is built.
            return x if make_frames is frames_after else make_frames(x, 0)
        return causal_window(x, ctx, self.cache_key, self.kernel_t, self.stride_t, make_frames)

    def convolve(self, window: Tensor) -> Tensor:
        """The convolution over a window from `window`, valid in time."""
        if window.shape[2] < self.kernel_t:  # no output determined yet
            b, _, _, h, w = window.shape
            (kh, kw), (sh, sw), (ph, pw) = self.conv.kernel_size[1:], self.conv.stride[1:], self.conv.padding[1:]
            return window.new_empty(
                (b, self.conv.out_channels, 0, (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1)
            )
        winograd = winograd_for(self.conv, window)
        if winograd is not None:
            return winograd_conv3d(window, self.conv.weight, self.conv.bias, winograd)
        return self.conv(window)


class ChannelNorm(nn.Module):
    """LayerNorm over channels at every position, or GroupNorm (32 groups) as configs name it.

    LayerNorm keeps its official wrapper (`norm.weight`); GroupNorm is the bare torch module
    (`weight`), as in the official checkpoints. `per_frame` GroupNorm normalises each frame alone
    (the 2D blocks); otherwise GroupNorm spans (C, T, H, W) and so cannot stream exactly.
    """

    def __init__(self, channels: int, norm_type: str, *, per_frame: bool = False) -> None:
        super().__init__()
        self.norm_type = norm_type
        self.per_frame = per_frame
        if norm_type == "layernorm":
            self.norm = nn.LayerNorm(channels, eps=1e-6)
        else:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))
            self.groups = 32

    def forward(self, x: Tensor, act: bool = False) -> Tensor:  # (B, C, T, H, W)
        """Normalised `x`, then SiLU if `act` (in place on the norm's own output: no second
        full-size tensor). LayerNorm returns a channels-last view. Causal convolutions take
        their input from `activated_frames` instead."""
        if self.norm_type == "layernorm":
            return self.channels_last(x, act).movedim(-1, 1)  # (B, C, T, H, W) view
        if self.per_frame:
            b, c, t, h, w = x.shape
            frames = x.transpose(1, 2).reshape(b * t, c, h, w)
            y = F.group_norm(frames, self.groups, self.weight, self.bias, 1e-6)
            y = y.reshape(b, t, c, h, w).transpose(1, 2)
        else:
            y = F.group_norm(x, self.groups, self.weight, self.bias, 1e-6)
        return _silu(y) if act else y

    def activated_frames(self, x: Tensor, head: int) -> Tensor:
        """SiLU(norm(x)) written after `head` free frames of a fresh causal window (see
        `causal.FrameMaker`): the normalised activation is made once, where the convolution
        reads it (computed there directly where the plan says `fused_norm`)."""
        if self.norm_type == "layernorm" and active().fused_norm:
            return layer_norm_silu_frames(x, self.norm, head)
        return frames_after(self(x, act=True), head)

    def channels_last(self, x: Tensor, act: bool = False) -> Tensor:
        """LayerNorm only: (B, C, T, H, W) -> normalised (B, T, H, W, C), contiguous."""
        y = F.layer_norm(x.movedim(1, -1), self.norm.normalized_shape, self.norm.weight, self.norm.bias, self.norm.eps)
        return _silu(y) if act else y


def convolve_activation(conv: CausalConv3d, norm: ChannelNorm, x: Tensor, ctx: CausalContext) -> Tensor:
    """conv(SiLU(norm(x))), the activation made once, straight into the convolution's causal window."""
    return conv.convolve(conv.window(x, ctx, norm.activated_frames))


def tracks_grad(*tensors: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _silu(y: Tensor) -> Tensor:
    """SiLU, in place where autograd does not need the input (inference)."""
    return F.silu(y, inplace=not tracks_grad(y))


def _add(h: Tensor, shortcut: Tensor) -> Tensor:
    """h + shortcut, in place into h (a fresh convolution output) where autograd allows."""
    if tracks_grad(h, shortcut):
        return h + shortcut
    return h.add_(shortcut)


class ResnetBlock2D(nn.Module):
    """Pre-activation residual block applied frame by frame (encoder level 1)."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(in_channels, norm_type, per_frame=True)
        self.conv1 = FrameConv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ChannelNorm(out_channels, norm_type, per_frame=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = FrameConv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = FrameConv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return _add(self.residual(x), shortcut)

    def residual(self, x: Tensor) -> Tensor:
        """The block's output less its shortcut, frame by frame (the encoder adds it to its input
        in place, `frame_slabs.add_frame_slabs_`)."""
        # conv1's output lives only until norm2 has read it, not through conv2.
        return self.conv2(self.dropout(self.norm2(self.conv1(self.norm1(x, act=True)), act=True)))


class ResnetBlock3D(nn.Module):
    """Pre-activation residual block with causal 3x3x3 convolutions."""

    def __init__(self, in_channels: int, out_channels: int, norm_type: str, dropout: float) -> None:
        super().__init__()
        self.norm1 = ChannelNorm(in_channels, norm_type)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3, padding=1)
        self.norm2 = ChannelNorm(out_channels, norm_type)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor, ctx: CausalContext) -> Tensor:
        h = self.residual(x, ctx)
        # The shortcut is made after the body, so its output and the body's windows never meet.
        shortcut = x if self.nin_shortcut is None else self.nin_shortcut(x, ctx)
        return _add(h, shortcut)

    def residual(self, x: Tensor, ctx: CausalContext) -> Tensor:
        """The block's output less its shortcut (`causal_slabs` adds it to the input in place)."""
        # Each convolution's input is made straight into its causal window, and conv1's output
        # is dropped once norm2 has read it: x, one window and one output are alive at a time.
        h = convolve_activation(self.conv1, self.norm1, x, ctx)
        window = self.conv2.window(h, ctx, self._conv2_frames)
        del h
        h = self.conv2.convolve(window)
        del window
        return h

    def _conv2_frames(self, h: Tensor, head: int) -> Tensor:
        if self.training and self.dropout.p > 0:
            return frames_after(self.dropout(self.norm2(h, act=True)), head)
        return self.norm2.activated_frames(h, head)


class FrameAttention(nn.Module):
    """Self-attention over the positions of each frame (official `AttnBlock3DFix`)."""

    def __init__(self, channels: int, norm_type: str) -> None:
        super().__init__()
        self.norm = ChannelNorm(channels, norm_type)
        self.q = CausalConv3d(channels, channels, 1)
        self.k = CausalConv3d(channels, channels, 1)
        self.v = CausalConv3d(channels, channels, 1)
        self.proj_out = CausalConv3d(channels, channels, 1)

    def forward(self, x: Tensor, ctx: CausalContext) -> Tensor:
        b, c, t, h, w = x.shape
        if self.norm.norm_type == "layernorm":
            tokens = self.norm.channels_last(x).reshape(b * t, h * w, c)  # no permute copy
        else:
            tokens = self.norm(x).permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
        # q, k and v are 1x1 convolutions of the same tokens: one matrix product.
        weight = torch.cat([self.q.conv.weight, self.k.conv.weight, self.v.conv.weight]).flatten(1)  # (3C, C)
        bias = torch.cat([self.q.conv.bias, self.k.conv.bias, self.v.conv.bias])
        q, k, v = F.linear(tokens, weight, bias).split(c, dim=-1)  # (B*T, H*W, C) each
        out = F.scaled_dot_product_attention(q, k, v)
        out = F.linear(out, self.proj_out.conv.weight.flatten(1), self.proj_out.conv.bias)
        out = out.reshape(b, t, h, w, c).permute(0, 4, 1, 2, 3)  # (B, C, T, H, W), a channels-last view
        return x + out.contiguous(memory_format=convolution_layout(x))


class FrameDownsample(nn.Module):
    """Halves height and width: zero pad right and bottom, 3x3 convolution with stride 2."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class FrameUpsample(nn.Module):
    """Doubles height and width: nearest-neighbour upsampling, then a 3x3 convolution."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = FrameConv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest"))
