"""A causal residual block run over a clip a slab of frames at a time, as a stream (paper Sec. 3.3).

Causal Cache makes a chunked pass equal the whole-clip pass: each causal layer keeps the tail
frames its next window needs. So a block may run over a clip in slabs of frames, with a stream
state of its own for the whole clip, and give the same output while its activations (the two
causal windows and the convolution outputs) exist only a slab at a time.

Each slab's output depends on its own frames and on tails the convolutions already copied, so
it may be written over the slab's input (`x += residual(x)`) as soon as it is made. Where the
block changes channels, the slabs fill a fresh output instead.
"""

from __future__ import annotations

from torch import Tensor

from ..causal import CausalContext, StreamState
from ..layers import ResnetBlock3D
from .channels_last import empty_video_like
from .policy import SlabSettings, active

__all__ = ["even_slabs", "run_block", "run_block_in_slabs", "slab_frames"]


def slab_frames(block: ResnetBlock3D, x: Tensor, settings: SlabSettings) -> int:
    """The most frames per slab for `block` over `x`: the whole clip where its widest activation
    fits `settings.slab_bytes` (there the convolutions' kernel workspace outweighs the
    activations, and slabs only added an output buffer beside them: the decoder's 896-channel
    block at 9x32x32, 31.5 MiB an activation, held 201 MiB in slabs, 179 whole); else
    `settings.max_slabs` slabs, or fewer where they would be thinner than `min_slab_frames`.
    GroupNorm blocks run whole: their statistics span the clip."""
    t = x.shape[2]
    if block.norm1.norm_type != "layernorm":
        return t
    channels = max(block.conv1.conv.in_channels, block.conv2.conv.out_channels)
    frame_bytes = channels * x.shape[0] * x.shape[3] * x.shape[4] * x.element_size()
    if frame_bytes * t <= settings.slab_bytes:
        return t
    return min(t, max(settings.min_slab_frames, -(-t // settings.max_slabs)))


def run_block(block: ResnetBlock3D, x: Tensor, ctx: CausalContext) -> Tensor:
    """`block(x, ctx)`, in slabs where the plan in force has slabs and `slab_frames` says so
    (then written over `x` where the block keeps its channels: `x` must be the caller's own)."""
    settings = active().slabs
    frames = x.shape[2] if settings is None else slab_frames(block, x, settings)
    if frames >= x.shape[2]:
        return block(x, ctx)
    return run_block_in_slabs(block, x, ctx, frames)


def run_block_in_slabs(block: ResnetBlock3D, x: Tensor, ctx: CausalContext, frames: int) -> Tensor:
    """`block(x, ctx)` in slabs of at most `frames` frames, as even as they can be (17 frames at
    most 6 a slab go 6 + 6 + 5; 9 at most 4 go 3 + 3 + 3, not 4 + 4 + 1: no lone small call).
    Where the block keeps its channels the result is written over `x` and returned; `x` must
    then be the caller's own, outside autograd.

    In a stream (`ctx.streaming`) the slabs go through the stream's own state; otherwise through
    a state made for this clip and dropped after it, so the first slab is padded as the clip is.
    """
    if frames < 1:
        raise ValueError(f"frames per slab must be positive, got {frames}")
    if x.requires_grad:
        raise ValueError("a block cannot run in slabs under autograd: call the block instead")
    if block.norm1.norm_type != "layernorm":
        # GroupNorm's statistics span every frame of the clip, so a slab would see other ones.
        raise ValueError("only LayerNorm blocks can run in slabs: GroupNorm spans the whole clip")
    keys = {block.conv1.cache_key, block.conv2.cache_key}
    if "" in keys or len(keys) < 2:
        raise ValueError("the block's convolutions need distinct cache keys (WFVAE names them after the modules)")
    slab_ctx = ctx if ctx.streaming else CausalContext(StreamState(), final=ctx.final)
    t = x.shape[2]
    out = x if block.nin_shortcut is None else empty_video_like(x, block.conv2.conv.out_channels, t)
    for start, stop in even_slabs(t, frames):
        slab = x[:, :, start:stop]  # (B, C_in, f, H, W)
        body = block.residual(slab, slab_ctx)  # (B, C_out, f, H, W)
        if block.nin_shortcut is None:
            slab.add_(body)  # the tails of this slab's frames were copied: it may be overwritten
        else:
            out[:, :, start:stop] = body.add_(block.nin_shortcut(slab, slab_ctx))
        del body  # before the next slab's activations
    return out


def even_slabs(frames: int, most: int) -> list[tuple[int, int]]:
    """(start, stop) of the fewest slabs of at most `most` frames covering `frames`, their sizes
    differing by one at most."""
    count = -(-frames // most)
    size, extra = divmod(frames, count) if frames else (0, 0)
    bounds, start = [], 0
    for i in range(count):
        stop = start + size + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds
