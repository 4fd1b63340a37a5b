"""The bf16 fast path on CPUs with AMX: channels-last activations from the model's input to its output.

oneDNN's AMX convolution kernels work in NDHWC. Given channels-first tensors, every convolution
reorders its input, weights and output (a 384-channel 3x3x3 convolution at 11x64x64: 579 ms
channels-first, 253 ms channels-last, 2 threads). So on a CPU with AMX-BF16, in bf16 inference,
the model's input and its convolution weights go channels-last once, at the model's entry
(`prepare_input`), and every layer keeps the layout it is given (`keeps_channels_last`):
LayerNorm reads a channels-last tensor as a contiguous (B, T, H, W, C) and writes one, SiLU and
the residual adds go in place, causal windows are made channels-last.

`runs_channels_last` is the one place that decides; everything else asks it or follows the
layout it set. Without AMX, in float32, on GPUs and under autograd nothing here changes anything.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor, nn

from .precision import cpu_capability

__all__ = [
    "CHANNELS_LAST",
    "empty_video_like",
    "keeps_channels_last",
    "prepare_input",
    "runs_channels_last",
    "set_weight_layout",
]

CHANNELS_LAST = torch.channels_last_3d


@cache
def _amx_bf16() -> bool:
    """Whether this process's oneDNN may use AMX-BF16 (decided once: the ISA limit is read once by oneDNN too)."""
    return cpu_capability().amx_bf16


def runs_channels_last(vae: nn.Module, x: Tensor) -> bool:
    """The decision point: whether `vae` runs `x` channels-last (CPU, bf16, AMX-BF16, inference)."""
    if x.device.type != "cpu" or x.dtype != torch.bfloat16 or not _amx_bf16():
        return False
    return not (torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in vae.parameters())))


def keeps_channels_last(x: Tensor) -> bool:
    """Whether a layer given `x` keeps it channels-last: a channels-last video on the fast path."""
    return (x.dim() == 5 and x.device.type == "cpu" and x.dtype == torch.bfloat16
            and x.is_contiguous(memory_format=CHANNELS_LAST) and _amx_bf16())


def empty_video_like(x: Tensor, channels: int, frames: int) -> Tensor:
    """An uninitialised (B, channels, frames, H, W) video in `x`'s dtype, device and kept layout."""
    b, _, _, h, w = x.shape
    layout = CHANNELS_LAST if keeps_channels_last(x) else torch.contiguous_format
    return torch.empty((b, channels, frames, h, w), dtype=x.dtype, device=x.device, memory_format=layout)


def prepare_input(vae: nn.Module, x: Tensor) -> Tensor:
    """`x` (B, C, T, H, W) in the layout `vae` runs it in, with the convolution weights moved to
    that layout (once: they stay so until the decision changes)."""
    channels_last = runs_channels_last(vae, x)
    set_weight_layout(vae, channels_last)
    return x.contiguous(memory_format=CHANNELS_LAST) if channels_last else x


def set_weight_layout(vae: nn.Module, channels_last: bool) -> None:
    """Every convolution weight of `vae` channels-last or channels-first; a no-op when already so."""
    if getattr(vae, "_weights_channels_last", False) == channels_last:
        return
    # Outside inference mode: the new weights must stay usable by autograd (training) later.
    with torch.inference_mode(False), torch.no_grad():
        for module in vae.modules():
            if isinstance(module, nn.Conv3d | nn.Conv2d):
                layout = torch.contiguous_format
                if channels_last:
                    layout = CHANNELS_LAST if module.weight.dim() == 5 else torch.channels_last
                module.weight.data = module.weight.data.contiguous(memory_format=layout)
    vae._weights_channels_last = channels_last
