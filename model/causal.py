"""Causal Cache as an explicit value: the per-stream memory of every causal layer (paper Sec. 3.3).

A `CausalContext` travels down the forward pass. Its `state` holds one entry per causal layer,
keyed by the layer's name (fixed when the model is built); a layer reads and writes only its own
entry. With `state=None` the pass is whole-clip inference: layers pad causally and keep nothing.
`final` tells layers that hold frames back (the decoder's temporal upsampler) to release them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from .fast_path.policy import active

__all__ = [
    "CausalContext",
    "FrameMaker",
    "StreamState",
    "causal_window",
    "convolution_layout",
    "frames_after",
]


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


def convolution_layout(x: Tensor) -> torch.memory_format:
    """The layout the causal padding copy writes, so the convolution after it reads it natively.

    On CUDA, channels-last 3D once activations are (LayerNorm's output is a channels-last view):
    cuDNN's tensor-core kernels work in NDHWC, and a channels-first copy costs them a transpose
    in and out of every convolution. On CPUs, channels-first: oneDNN's direct 3x3x3 convolution
    ran 1.25-1.45x faster on it here (2-thread AVX2 micro-benchmark), except where the plan in
    force keeps bf16 activations channels-last for AMX (`fast_path.channels_last`).
    """
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d) and (
            x.is_cuda or active().channels_last):
        return torch.channels_last_3d
    return torch.contiguous_format


def frames_after(x: Tensor, head: int, layout: torch.memory_format | None = None) -> Tensor:
    """A fresh (B, C, head + T, H, W) buffer with `x` copied into its last T frames; the first
    `head` frames are left for the caller. The default layout is `convolution_layout(x)`."""
    b, c, t, h, w = x.shape
    frames = torch.empty((b, c, head + t, h, w), dtype=x.dtype, device=x.device,
                         memory_format=convolution_layout(x) if layout is None else layout)
    frames[:, :, head:] = x
    return frames


# Makes the frames a causal layer reads from its input `x`: (x, head) -> (B, C, head + T, H, W)
# with frames [head:] filled. Writing them straight into the window (after the head the cache
# fills) means a block's normalised activation exists once, not once more as the padded copy.
FrameMaker = Callable[[Tensor, int], Tensor]


def causal_window(x: Tensor, ctx: CausalContext, key: str, kernel_t: int, stride_t: int,
                  make_frames: FrameMaker = frames_after) -> Tensor:
    """The frames a temporal kernel must see now, and the tail it must remember.

    The kernel reads `make_frames(x)` (by default `x` itself; a block passes its norm and SiLU).
    The clip is padded in time by repeating that input's first frame `kernel_t - 1` times (the
    official causal padding). In a stream, the frames after the last complete window (at least
    `kernel_t - stride_t` of them) are kept under `key` and put in front of the next chunk, so
    every chunk plan sees exactly the whole clip's windows. Returns a tensor whose length gives
    `(len - kernel_t) // stride_t + 1` outputs; zero frames long when no output is determined yet.
    """
    tail: Tensor | None = ctx.get(key)  # (B, C, t, H, W), frames already made
    if x.shape[2] == 0:
        if tail is None:
            return x
        frames = tail
    else:
        head = kernel_t - 1 if tail is None else tail.shape[2]
        frames = make_frames(x, head)  # (B, C, head + T, H, W), the head still to fill
        frames[:, :, :head] = frames[:, :, head : head + 1] if tail is None else tail
    outputs = (frames.shape[2] - kernel_t) // stride_t + 1 if frames.shape[2] >= kernel_t else 0
    if ctx.streaming:
        # Clone so the tail does not keep the whole chunk's buffer alive.
        ctx.put(key, frames[:, :, outputs * stride_t:].clone())
    if outputs == 0:
        return frames[:, :, :0]
    return frames[:, :, : (outputs - 1) * stride_t + kernel_t]
