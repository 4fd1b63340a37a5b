"""How the encoder and decoder run their layers: plainly, or as the plan in force says.

The backbone is a chain: each layer reads the output of the one before, and nothing reads that
output again. This is what lets the CPU fast path (`fast_path.frame_slabs`,
`fast_path.causal_slabs`) run residual blocks a slab of frames at a time and write their output
over their input. Callers loop over layers themselves (`hidden = run_layer(layer, hidden, ctx)`):
rebinding `hidden` drops each input as soon as the next output exists, which a function taking
the whole stack could not (its caller would hold the input through the stack).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from .causal import CausalContext
from .fast_path import causal_slabs, frame_slabs
from .fast_path.policy import active
from .layers import FrameConv2d, FrameUpsample, ResnetBlock3D

__all__ = ["run_frame_stack", "run_layer"]

PER_FRAME = (FrameConv2d, FrameUpsample)  # layers of a causal stack that look at no other frame


def run_frame_stack(layers: Sequence[nn.Module], x: Tensor) -> Tensor:
    """Per-frame (2D) layers in order over x (B, C, T, H, W), in slabs of frames where the plan
    has them; `x` itself is never written."""
    slabs = active().slabs
    if slabs is not None:
        return frame_slabs.run_stack_in_slabs(layers, x, slabs)
    for layer in layers:
        x = layer(x)
    return x


def run_layer(layer: nn.Module, x: Tensor, ctx: CausalContext) -> Tensor:
    """One backbone layer over x (B, C, T, H, W), the causal ones with `ctx`. `x` must be the
    caller's own, read by no one after: a residual block may write over it."""
    if isinstance(layer, PER_FRAME):
        return layer(x)
    if isinstance(layer, ResnetBlock3D):
        return causal_slabs.run_block(layer, x, ctx)
    return layer(x, ctx)
