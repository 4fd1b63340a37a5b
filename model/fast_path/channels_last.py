"""bf16 on CPUs with AMX: channels-last activations from the model's input to its output.

oneDNN's AMX convolution kernels work in NDHWC. Given channels-first tensors, every convolution
reorders its input, weights and output (a 384-channel 3x3x3 convolution at 11x64x64: 579 ms
channels-first, 253 ms channels-last, 2 threads). So where the plan says `channels_last` (bf16
inference on a CPU with AMX-BF16, `policy.FastPath.plan_for`), the model's input and its
convolution weights go channels-last once, at the model's entry (`prepare`), and every layer
keeps the layout it is given (`keeps_channels_last`): LayerNorm reads a channels-last tensor as
a contiguous (B, T, H, W, C) and writes one, SiLU and the residual adds go in place, causal
windows are made channels-last.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .policy import Plan, active

__all__ = ["CHANNELS_LAST", "empty_video_like", "keeps_channels_last", "prepare", "set_weight_layout"]

CHANNELS_LAST = torch.channels_last_3d


def keeps_channels_last(x: Tensor) -> bool:
    """Whether a layer given `x` keeps it channels-last: a channels-last video under such a plan."""
    return active().channels_last and x.dim() == 5 and x.is_contiguous(memory_format=CHANNELS_LAST)


def empty_video_like(x: Tensor, channels: int, frames: int) -> Tensor:
    """An uninitialised (B, channels, frames, H, W) video in `x`'s dtype, device and kept layout."""
    b, _, _, h, w = x.shape
    layout = CHANNELS_LAST if keeps_channels_last(x) else torch.contiguous_format
    return torch.empty((b, channels, frames, h, w), dtype=x.dtype, device=x.device, memory_format=layout)


def prepare(model: nn.Module, x: Tensor, plan: Plan) -> Tensor:
    """`x` (B, C, T, H, W) in the layout `plan` runs it in, the model's convolution weights moved
    to that layout (they stay so until a plan says otherwise)."""
    set_weight_layout(model, plan.channels_last)
    return x.contiguous(memory_format=CHANNELS_LAST) if plan.channels_last else x


def set_weight_layout(model: nn.Module, channels_last: bool) -> None:
    """Every convolution weight of `model` channels-last or channels-first (a weight already in
    that layout is left as it is)."""
    # Outside inference mode: the new weights must stay usable by autograd (training) later.
    with torch.inference_mode(False), torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv3d | nn.Conv2d):
                layout = torch.contiguous_format
                if channels_last:
                    layout = CHANNELS_LAST if module.weight.dim() == 5 else torch.channels_last
                if not module.weight.is_contiguous(memory_format=layout):
                    module.weight.data = module.weight.data.contiguous(memory_format=layout)
