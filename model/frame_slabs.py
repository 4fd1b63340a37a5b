"""Per-frame layers run over a clip a slab of frames at a time: the same result, less memory.

A stack of 2D layers (per-frame convolutions and norms) treats every frame alone, so it may run
on a few frames at a time. The encoder's level 1 is such a stack, at the widest activations of
the model (base channels at half the input's side): for a 33x256x256 clip each of its tensors
is 204 MB, and a residual block holds three of them. In slabs they exist a slab at a time.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

__all__ = ["SLAB_BYTES", "frames_per_slab", "map_frame_slabs"]

# One activation of a slab. 32 MB keeps a slab's tensors in the range the allocator reuses
# (and a 17x128x128 clip, 28 MB per activation, in one slab: small clips run as before).
SLAB_BYTES = 32 * 2**20


def frames_per_slab(frame_bytes: int, slab_bytes: int | None = None) -> int:
    """Frames whose widest activation (`frame_bytes` per frame) fits `slab_bytes` (default
    `SLAB_BYTES`); at least one."""
    budget = SLAB_BYTES if slab_bytes is None else slab_bytes
    return max(1, budget // max(1, frame_bytes))


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
            out = y.new_empty((*y.shape[:2], t, *y.shape[3:]))
        out[:, :, start:stop] = y
        del y  # before the next slab's activations
    assert out is not None
    return out
