"""Per-frame layers run over a clip a slab of frames at a time: the same result, less memory.

A stack of 2D layers (per-frame convolutions and norms) treats every frame alone, so it may run
on a few frames at a time. The encoder's level 1 is such a stack, at the widest activations of
the model (base channels at half the input's side): for a 33x256x256 clip each of its tensors
is 204 MB, and a residual block holds three of them. In slabs they exist a slab at a time.

Within a slab a residual block can go further: its output replaces its input a few frames at a
time (`add_frame_slabs_`), so it holds its input and a few frames' activations, not input, output
and a full-size activation beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from ..layers import ResnetBlock2D
from .channels_last import empty_video_like
from .policy import SlabSettings

__all__ = ["add_frame_slabs_", "frames_per_slab", "map_frame_slabs", "run_stack_in_slabs"]


def frames_per_slab(frame_bytes: int, slab_bytes: int) -> int:
    """Frames whose widest activation (`frame_bytes` per frame) fits `slab_bytes`; at least one."""
    return max(1, slab_bytes // max(1, frame_bytes))


def run_stack_in_slabs(layers: Sequence[nn.Module], x: Tensor, settings: SlabSettings) -> Tensor:
    """The per-frame layers in order over x (B, C, T, H, W), in slabs of frames whose widest
    activation (the layers' most output channels at x's side) fits `settings.slab_bytes`; within
    a slab, residual blocks that keep their channels write over their input. `x` is not written."""
    b, _, _, h, w = x.shape
    widest = max(m.out_channels for layer in layers for m in layer.modules() if isinstance(m, nn.Conv2d | nn.Conv3d))
    frames = frames_per_slab(b * widest * h * w * x.element_size(), settings.slab_bytes)
    return map_frame_slabs(lambda slab: _stack(layers, slab, settings), x, frames)


def _stack(layers: Sequence[nn.Module], x: Tensor, settings: SlabSettings) -> Tensor:
    hidden = x
    for layer in layers:
        # A layer's own output, read by no one after the next layer, may be written over.
        if hidden is not x and isinstance(layer, ResnetBlock2D) and layer.nin_shortcut is None:
            frame_bytes = hidden[:, :, :1].numel() * hidden.element_size()
            hidden = add_frame_slabs_(layer.residual, hidden, frames_per_slab(frame_bytes, settings.residual_slab_bytes))
        else:
            hidden = layer(hidden)
    return hidden


def map_frame_slabs(fn: Callable[[Tensor], Tensor], x: Tensor, frames: int) -> Tensor:
    """`fn(x)` for a per-frame `fn` on (B, C, T, H, W), computed `frames` frames at a time.

    `fn` must map every frame on its own and keep the frame count (2D layers only: anything that
    looks across frames would see a cut clip).
    """
    if frames < 1:
        raise ValueError(f"frames per slab must be positive, got {frames}")
    t = x.shape[2]
    if t <= frames:
        return fn(x)
    out: Tensor | None = None
    for start in range(0, t, frames):
        stop = min(t, start + frames)
        y = fn(x[:, :, start:stop])
        if y.shape[2] != stop - start:
            raise ValueError(f"a per-frame function must keep the frame count: {stop - start} -> {y.shape[2]}")
        if out is None:  # the first slab tells the output's channels and size
            out = empty_video_like(y, y.shape[1], t)
        out[:, :, start:stop] = y
        del y  # before the next slab's activations
    assert out is not None
    return out


def add_frame_slabs_(fn: Callable[[Tensor], Tensor], x: Tensor, frames: int) -> Tensor:
    """`x += fn(x)` in place, `frames` frames at a time, for a per-frame `fn` that keeps the shape
    (a residual block's body): returns `x`.

    A slab's result depends on that slab's frames only, and they are overwritten only once it is
    made, so later slabs still read the input. `x` must be the caller's own tensor, outside autograd.
    """
    if frames < 1:
        raise ValueError(f"frames per slab must be positive, got {frames}")
    if x.requires_grad:
        raise ValueError("an in-place residual cannot run under autograd: call the block instead")
    for start in range(0, x.shape[2], frames):
        slab = x[:, :, start : start + frames]
        y = fn(slab)
        if y.shape != slab.shape:
            raise ValueError(f"a residual body must keep the slab's shape: {tuple(slab.shape)} -> {tuple(y.shape)}")
        slab.add_(y)
        del y  # before the next slab's activations
    return x
