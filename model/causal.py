"""Causal Cache as an explicit value: the per-stream memory of every causal layer (paper Sec. 3.3).

A `CausalContext` travels down the forward pass. Its `state` holds one entry per causal layer,
keyed by the layer's name (fixed when the model is built); a layer reads and writes only its own
entry. With `state=None` the pass is whole-clip inference: layers pad causally and keep nothing.
`final` tells layers that hold frames back (the decoder's temporal upsampler) to release them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

__all__ = ["CausalContext", "StreamState", "causal_window", "convolution_layout", "empty_frames", "join_frames"]


@dataclass
class StreamState:
    """Everything one stream must remember between chunks; one object per stream."""

    entries: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CausalContext:
    """What a forward pass knows about its place in a stream."""

    state: StreamState | None = None
    final: bool = True

    @property
    def streaming(self) -> bool:
        return self.state is not None

    def get(self, key: str) -> Any:
        return None if self.state is None else self.state.entries.get(key)

    def put(self, key: str, value: Any) -> None:
        if self.state is not None:
            self.state.entries[key] = value


WHOLE_CLIP = CausalContext()


def empty_frames(like: Tensor, channels: int | None = None, height: int | None = None,
                 width: int | None = None) -> Tensor:
    """A zero-frame video tensor shaped like `like` but for the given sizes."""
    b, c, _, h, w = like.shape
    return like.new_empty((b, channels or c, 0, height or h, width or w))


def convolution_layout(x: Tensor) -> torch.memory_format:
    """The layout the causal padding copy writes, so the convolution after it reads it natively.

    On CUDA, channels-last 3D once activations are (LayerNorm's output is a channels-last view):
    cuDNN's tensor-core kernels work in NDHWC, and a channels-first copy costs them a transpose
    in and out of every convolution. On CPUs, channels-first: oneDNN's direct 3x3x3 convolution
    ran 1.25-1.45x faster on it here (2-thread AVX2 micro-benchmark).
    """
    if x.is_cuda and x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def join_frames(head: Tensor, x: Tensor, layout: torch.memory_format) -> Tensor:
    """torch.cat([head, x], dim=2) written in `layout` (one copy either way)."""
    if layout == torch.contiguous_format:
        return torch.cat([head, x], dim=2)
    b, c, t, h, w = x.shape
    frames = torch.empty((b, c, head.shape[2] + t, h, w), dtype=x.dtype, device=x.device, memory_format=layout)
    frames[:, :, : head.shape[2]] = head
    frames[:, :, head.shape[2]:] = x
    return frames


def causal_window(x: Tensor, ctx: CausalContext, key: str, kernel_t: int, stride_t: int) -> Tensor:
    """The frames a temporal kernel must see now, and the tail it must remember.

    The clip is padded in time by repeating its first frame `kernel_t - 1` times (the official
    causal padding). In a stream, the frames after the last complete window (at least
    `kernel_t - stride_t` of them) are kept under `key` and put in front of the next chunk, so
    every chunk plan sees exactly the whole clip's windows. Returns a tensor whose length gives
    `(len - kernel_t) // stride_t + 1` outputs; zero frames long when no output is determined yet.
    """
    tail: Tensor | None = ctx.get(key)  # (B, C, t, H, W)
    if tail is None:
        if x.shape[2] == 0:
            return x
        pad = x[:, :, :1].expand(-1, -1, kernel_t - 1, -1, -1)
        frames = join_frames(pad, x, convolution_layout(x))
    elif x.shape[2] == 0:
        frames = tail
    else:
        frames = join_frames(tail, x, convolution_layout(x))
    outputs = (frames.shape[2] - kernel_t) // stride_t + 1 if frames.shape[2] >= kernel_t else 0
    if ctx.streaming:
        # Clone so the tail does not keep the whole chunk's buffer alive.
        ctx.put(key, frames[:, :, outputs * stride_t:].clone())
    if outputs == 0:
        return frames[:, :, :0]
    return frames[:, :, : (outputs - 1) * stride_t + kernel_t]
