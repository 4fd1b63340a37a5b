"""Haar wavelet transforms, 2D per frame and 3D causal in time (paper Sec. 3.1).

Each transform is one reshape and one small matrix product with the fixed Haar filters stacked
(a stride-2 convolution with a 2x2(x2) kernel never overlaps: it is a block-wise linear map),
instead of one call per channel and subband. The filters stay buffers loaded
from and saved to the official state-dict entries (`h_conv.conv.weight`, `aa`, `h`, ...), so
checkpoints round-trip with the official code, which stores them rounded to 0.3536.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .causal import CausalContext, causal_window

__all__ = [
    "HAAR_2D_SUBBANDS",
    "HAAR_3D_SUBBANDS",
    "HaarTransform2D",
    "HaarTransform3D",
    "InverseHaarTransform2D",
    "InverseHaarTransform3D",
]

HAAR_2D_SUBBANDS = 4
HAAR_3D_SUBBANDS = 8
INV_SQRT8 = 1.0 / math.sqrt(8.0)  # the official checkpoints store it rounded: 0.3536

# Sign patterns over (t, h, w) in the official subband order: low/high in w, then h, then t.
_SIGNS_1D = {"low": (1.0, 1.0), "high": (1.0, -1.0)}
_NAMES_3D = ("h", "g", "hh", "gh", "h_v", "g_v", "hh_v", "gh_v")
_NAMES_2D = ("aa", "ad", "da", "dd")


def _haar_3d_filters(scale: float) -> Tensor:
    """(8, 1, 2, 2, 2) filters; subband k has time/height/width bands from bits 2/1/0 of k."""
    filters = []
    for k in range(HAAR_3D_SUBBANDS):
        t = torch.tensor(_SIGNS_1D["high" if k & 4 else "low"])
        h = torch.tensor(_SIGNS_1D["high" if k & 2 else "low"])
        w = torch.tensor(_SIGNS_1D["high" if k & 1 else "low"])
        filters.append(torch.einsum("i,j,k->ijk", t, h, w) * scale)
    return torch.stack(filters).unsqueeze(1)


def _haar_2d_filters() -> Tensor:
    """(4, 1, 2, 2) filters in the official order aa, ad (high in h), da (high in w), dd."""
    low, high = torch.tensor(_SIGNS_1D["low"]), torch.tensor(_SIGNS_1D["high"])
    pairs = [(low, low), (high, low), (low, high), (high, high)]  # (h band, w band)
    return torch.stack([torch.outer(h, w) / 2 for h, w in pairs]).unsqueeze(1)


class _NamedFilters(nn.Module):
    """Holds a stacked filter bank as one buffer; reads and writes it as the official entries."""

    def __init__(self, filters: Tensor, names: tuple[str, ...], key_format: str) -> None:
        super().__init__()
        self.register_buffer("filters", filters)
        self._official_keys = tuple(key_format.format(name) for name in names)
        self._register_state_dict_hook(self._split_filters)
        self._register_load_state_dict_pre_hook(self._stack_filters, with_module=False)

    def _split_filters(self, module: nn.Module, state: dict[str, Any], prefix: str, _meta: Any) -> None:
        stacked = state.pop(prefix + "filters")
        for key, one in zip(self._official_keys, stacked, strict=True):
            state[prefix + key] = one.unsqueeze(0)

    def _stack_filters(self, state: dict[str, Any], prefix: str, *_args: Any) -> None:
        keys = [prefix + key for key in self._official_keys]
        if all(key in state for key in keys):
            state[prefix + "filters"] = torch.cat([state.pop(key) for key in keys], dim=0)


class HaarTransform3D(_NamedFilters):
    """(B, C, T, H, W) -> (B, 8C, (T+1)/2, H/2, W/2), channels ordered subband-major.

    Causal in time: the first frame is paired with itself, so T = 1 + 2k gives 1 + k frames.
    """

    def __init__(self, cache_key: str = "") -> None:
        super().__init__(_haar_3d_filters(INV_SQRT8), _NAMES_3D, "{}_conv.conv.weight")
        self.cache_key = cache_key

    def forward(self, x: Tensor, ctx: CausalContext) -> Tensor:
        b, c = x.shape[:2]
        window = causal_window(x, ctx, self.cache_key, kernel_t=2, stride_t=2)
        if window.shape[2] == 0:
            return window.new_empty((b, HAAR_3D_SUBBANDS * c, 0, x.shape[3] // 2, x.shape[4] // 2))
        t, h, w = (n // 2 for n in window.shape[2:])
        # Each 2x2x2 block is a vector of 8 samples; every subband is a fixed combination of
        # them: one reshape (the only copy) and one (8, 8) matrix product, not a convolution.
        blocks = window.reshape(b, c, t, 2, h, 2, w, 2).permute(0, 3, 5, 7, 1, 2, 4, 6)  # (B, 2, 2, 2, C, t, h, w)
        blocks = blocks.reshape(b, HAAR_3D_SUBBANDS, c * t * h * w)
        y = torch.matmul(self.filters.reshape(HAAR_3D_SUBBANDS, -1), blocks)  # (B, 8, C t h w)
        return y.view(b, HAAR_3D_SUBBANDS * c, t, h, w)


class InverseHaarTransform3D(_NamedFilters):
    """(B, 8C, T, H, W) -> (B, C, 2T - 1, 2H, 2W) for the stream's first chunk, 2T after it."""

    def __init__(self, cache_key: str = "") -> None:
        super().__init__(_haar_3d_filters(INV_SQRT8), _NAMES_3D, "{}")
        self.cache_key = cache_key

    def forward(self, coeffs: Tensor, ctx: CausalContext) -> Tensor:
        b, c8, t, h, w = coeffs.shape
        c = c8 // HAAR_3D_SUBBANDS
        if t == 0:
            return coeffs.new_empty((b, c, 0, 2 * h, 2 * w))
        # Transposed stride-2 convolution = every coefficient vector times the filter bank, the
        # 8 products laid out as a 2x2x2 block: a matrix product, then one reshape.
        blocks = torch.matmul(self.filters.reshape(HAAR_3D_SUBBANDS, -1).t(), coeffs.reshape(b, HAAR_3D_SUBBANDS, -1))
        y = blocks.view(b, 2, 2, 2, c, t, h, w).permute(0, 4, 5, 1, 6, 2, 7, 3)  # (B, C, T, 2, H, 2, W, 2)
        y = y.reshape(b, c, 2 * t, 2 * h, 2 * w)
        if ctx.get(self.cache_key) is None:
            # The first frame was paired with itself by the forward transform: drop its twin.
            ctx.put(self.cache_key, True)
            y = y[:, :, 1:]
        return y


class HaarTransform2D(_NamedFilters):
    """(B, C, T, H, W) -> (B, 4C, T, H/2, W/2) per frame, channels ordered subband-major."""

    def __init__(self) -> None:
        super().__init__(_haar_2d_filters(), _NAMES_2D, "{}")

    def forward(self, x: Tensor) -> Tensor:
        b, c, t, h, w = x.shape
        h, w = h // 2, w // 2
        blocks = x.reshape(b, c, t, h, 2, w, 2).permute(0, 4, 6, 1, 2, 3, 5)  # (B, 2, 2, C, T, h, w)
        blocks = blocks.reshape(b, HAAR_2D_SUBBANDS, c * t * h * w)
        y = torch.matmul(self.filters.reshape(HAAR_2D_SUBBANDS, -1), blocks)  # (B, 4, C T h w)
        return y.view(b, HAAR_2D_SUBBANDS * c, t, h, w)


class InverseHaarTransform2D(_NamedFilters):
    """(B, 4C, T, H, W) -> (B, C, T, 2H, 2W) per frame."""

    def __init__(self) -> None:
        super().__init__(_haar_2d_filters(), _NAMES_2D, "{}")

    def forward(self, coeffs: Tensor) -> Tensor:
        b, c4, t, h, w = coeffs.shape
        c = c4 // HAAR_2D_SUBBANDS
        blocks = torch.matmul(self.filters.reshape(HAAR_2D_SUBBANDS, -1).t(), coeffs.reshape(b, HAAR_2D_SUBBANDS, -1))
        y = blocks.view(b, 2, 2, c, t, h, w).permute(0, 3, 4, 5, 1, 6, 2)  # (B, C, T, H, 2, W, 2)
        return y.reshape(b, c, t, 2 * h, 2 * w)
