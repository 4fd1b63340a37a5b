"""LayerNorm over channels and SiLU, computed channels-first straight into a causal window (float32, CPU).

`F.layer_norm` wants channels last: normalising a (B, C, T, H, W) video costs a transposed input
copy, its own output and a transposed copy into the convolution's window. Computed channels-first
into the window, it ran 1.2-2.2x faster at 256-512 channels (as fast at 128; 2-thread
micro-benchmark), holds one full-size tensor instead of three, and writes channels-first, on
which oneDNN's 3x3x3 convolution ran 1.25-1.45x faster. bf16 keeps `F.layer_norm`: it rounds
once, where these steps would round four times (`policy.FastPath.plan_for`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["layer_norm_silu_frames"]


def layer_norm_silu_frames(x: Tensor, norm: nn.LayerNorm, head: int) -> Tensor:
    """SiLU(norm(x)) over the channels of x (B, C, T, H, W), written into frames [head:] of a
    fresh (B, C, head + T, H, W) buffer whose first `head` frames are left for the caller."""
    b, c, t, h, w = x.shape
    frames = x.new_empty((b, c, head + t, h, w))
    out = frames[:, :, head:]
    var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)  # (B, 1, T, H, W)
    torch.sub(x, mean, out=out)
    out.mul_(var.add_(norm.eps).rsqrt_())
    torch.addcmul(norm.bias.view(c, 1, 1, 1), out, norm.weight.view(c, 1, 1, 1), out=out)
    F.silu(out, inplace=True)
    return frames
