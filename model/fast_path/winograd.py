"""Winograd F(4x4, 3x3) convolution for CPU inference: the same 3x3 convolution, 4x fewer multiplies.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). Every 6x6 input
tile and every 3x3 kernel slice are carried into a 36-point transform domain, where the
convolution becomes 36 independent matrix products over channels; a last transform gives 4x4
output tiles. 36 products for 16 outputs instead of 144: on the 2-core AVX2 CPU this project runs
on, oneDNN's direct 3x3x3 convolution runs at 65-77 GFLOP/s (about the machine's GEMM rate), so
cutting the arithmetic is the only way to go faster, and it does: 1.4-2.2x on the L preset's
384-896-channel layers (2 threads, `benchmarks/winograd_layers.py`), 1.5-1.6x for the whole
model (`benchmarks/README.md`, model speed). Below about 192 channels the transforms, which
only move memory, cost more than they save, so narrow layers stay direct.

The temporal taps of a (k, 3, 3) kernel are summed in the transform domain (k accumulating
matrix products over shifted frames), so one set of transforms serves all k taps. The input is
transformed in bands of tile rows (and, for very long clips, blocks of frames) that keep the
buffers near `WinogradSettings.workspace_bytes` (less beside a whole transformed kernel),
so long clips do not raise peak memory. A kernel that outweighs its input (short clips at small
sides) is never held whole: the call goes one column of the 6x6 transform at a time (six of the
36 points: their input points, kernel and products), adding each column's share into the output
tiles. Results match direct convolution to float32 rounding
(the interpolation points 0, +-1, +-2 keep the transforms' constants small; max abs error
within a few times oneDNN's own).

When it runs is the fast path's policy (`policy.FastPath`): CPU float32 inference, and by default
only where oneDNN's float32 convolution is held to AVX2 (`pays_on_this_cpu`): with AVX-512,
oneDNN's direct convolution does twice the AVX2 multiplies per cycle, and on the AVX-512
development machine every layer of the L preset ran slower as Winograd, 0.26-0.83x of the direct
convolution in CPU time (2 threads, `benchmarks/winograd_layers.py --clock cpu`), and the
17x128x128 encode 0.6-0.83x. Which layers it takes is `WinogradSettings.applies`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..precision import cpu_capability

__all__ = [
    "KERNEL_TRANSFORM_CHUNK_BYTES",
    "STENCIL_CHUNK_BYTES",
    "WinogradSettings",
    "pays_on_this_cpu",
    "transform_kernel",
    "winograd_conv3d",
]

TILE = 4  # output tile side
WINDOW = TILE + 2  # input tile side for a 3-tap kernel


@dataclass(frozen=True)
class WinogradSettings:
    """Which layers go Winograd (`applies`), and the memory blocks of a call (`winograd_conv3d`)."""

    # Channels below which the transforms cost more than they save: a 3x3x3 kernel at 128
    # channels ran 0.96x of oneDNN, at 192-384 1.45x.
    min_channels: int = 192
    # The same for per-frame 3x3 kernels (one tap carries the transforms alone): 0.99x at 128
    # channels, 1.21-1.27x at 192 alone, but no faster inside the encoder (0.98-1.02x,
    # alternating in one process) while its buffers raised the encoder's resident peak from 260
    # to 368 MB at 17x128x128; 1.83x at 384 (the decoder's upsampler: decode 1.055x faster).
    min_frame_channels: int = 384
    # Output frames x 4x4 tiles below which a layer is too small to bother (768 channels, 5
    # frames of 16x16 = 80 columns still ran 1.3x faster than oneDNN).
    min_columns: int = 64
    # Smaller blocks than these cost speed: kernels too large to keep (768+ channels) are
    # transformed again for every block, and thin kernel slices re-read the transformed input
    # once per slice (8 MB slices and input-sized blocks: 2.4x slower on 768 channels at 16x16,
    # 1.7x at 896). Bands of 32-64 MB of transformed input ran fastest.
    workspace_bytes: int = 32 * 2**20
    # Beside a whole transformed kernel (up to 64 MB, made once per call), 16 MB blocks lowered
    # the L model's 17x128x128 tensor peaks by 13-17% at the same speed; where kernels go in
    # slices, re-made for every block, 16 MB blocks ran the decoder 11% slower, so those keep 32.
    kept_kernel_workspace_bytes: int = 16 * 2**20
    kernel_block_bytes: int = 32 * 2**20  # transformed kernels of one slice of output channels
    # A kernel small enough to keep whole can still outweigh the layer's input (short clips at
    # small sides: 61 MB for 384 channels beside a 17 MB input at 17x128x128). Such a call goes by
    # transform columns (`_convolve_by_columns`): 40 instead of 102 MB over its input, and as fast
    # (194-287 vs 215-265 ms: the whole kernel's fresh 61 MB paid page faults on every call).
    # False keeps such kernels whole too (`benchmarks/winograd_kernel_slices.py` compares them).
    by_columns: bool = True

    def __post_init__(self) -> None:
        if min(self.min_channels, self.min_frame_channels, self.min_columns) < 0:
            raise ValueError(f"Winograd thresholds must be 0 or more: {self}")
        if min(self.workspace_bytes, self.kept_kernel_workspace_bytes, self.kernel_block_bytes) < 1:
            raise ValueError(f"Winograd block sizes must be at least 1 byte: {self}")

    def applies(self, conv: nn.Conv2d | nn.Conv3d, x: Tensor) -> bool:
        """Whether `conv` (a 3D convolution valid in time, or a 2D one applied per frame) can run
        on the video `x` as a Winograd convolution: a (k,) 3 x 3 kernel with stride 1 and spatial
        padding 1, wide enough and with output enough to pay for the transforms."""
        temporal_padding = conv.padding[0] if isinstance(conv, nn.Conv3d) else 0
        taps = conv.kernel_size[0] if isinstance(conv, nn.Conv3d) else 1
        return (
            x.dtype == torch.float32
            and conv.weight.dtype == torch.float32
            and tuple(conv.kernel_size[-2:]) == (3, 3)
            and all(s == 1 for s in conv.stride)
            and tuple(conv.padding[-2:]) == (1, 1)
            and temporal_padding == 0
            and all(d == 1 for d in conv.dilation)
            and conv.groups == 1
            and min(conv.in_channels, conv.out_channels)
            >= (self.min_channels if taps > 1 else self.min_frame_channels)
            and _output_columns(taps, x) >= self.min_columns
        )


DEFAULT_SETTINGS = WinogradSettings()

# Output of one product of the kernel transform. One product per tap over the whole kernel ran at
# a quarter of the memory's speed (53 ms for 384 channels, 243 for 768, into a warm buffer); a few
# output channels at a time (a cached slice of the weight) took 16-18 and 70-75.
KERNEL_TRANSFORM_CHUNK_BYTES = 4 * 2**20
STENCIL_CHUNK_BYTES = 2**20  # input points made by one stencil convolution, before their copy

# Transform matrices for interpolation points 0, 1, -1, 2, -2 and infinity (float64; cast per call).
_INPUT = torch.tensor(  # B^T (6, 6): input tile -> transform domain
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    dtype=torch.float64,
)
_KERNEL = torch.tensor(  # G (6, 3): kernel -> transform domain
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    dtype=torch.float64,
)
_OUTPUT = torch.tensor(  # A^T (4, 6): transform domain -> output tile
    [
        [1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 0],
        [0, 1, 1, 4, 4, 0],
        [0, 1, -1, 8, -8, 1],
    ],
    dtype=torch.float64,
)

# G (x) G as a (36, 9) operator: point (b, a) of slice w is sum_hw G[a, h] w[h, w] G[b, w].
_KERNEL_9_TO_36 = torch.einsum("ah,bw->bahw", _KERNEL, _KERNEL).reshape(36, 9)
# B^T (x) B^T as 36 stencils over a 6x6 tile, ordered [b][a] like the kernel's points: one 2D
# convolution of stride 4 makes a point for every tile, tile d giving sum_ij B^T[a, i] d[i, j] B^T[b, j].
_INPUT_STENCILS = torch.einsum("ai,bj->baij", _INPUT, _INPUT).reshape(36, 1, WINDOW, WINDOW)


@cache
def pays_on_this_cpu() -> bool:
    """Whether Winograd beats oneDNN's direct float32 convolution here: only without AVX-512
    (absent, or held off by `ONEDNN_MAX_CPU_ISA`)."""
    return not cpu_capability().avx512


def _output_columns(taps: int, x: Tensor) -> int:
    """Output frames x output tiles: the columns of the transform-domain matrix products."""
    t, h, w = x.shape[2:]
    return (t - taps + 1) * -(-h // TILE) * -(-w // TILE)


def transform_kernel(weight: Tensor, out: Tensor | None = None) -> Tensor:
    """(C_out, C_in, k, 3, 3) -> (36, k, C_out, C_in): G w G^T for every kernel slice, as one
    matrix product per tap with the 36 x 9 operator G (x) G; points ordered [column][row] like
    the input's.

    Each tap's slices are read in place (a (C_out * C_in, 9) view of the weight, rows k * 9 apart)
    and written in place (rows of `out`, a tap apart): no transposed copy of the weight. They go
    a few output channels at a time (`KERNEL_TRANSFORM_CHUNK_BYTES` of output per product).
    `out`: a flat tensor of at least 36 x C_out*k*C_in elements to reuse.
    """
    c_out, c_in, k = weight.shape[:3]
    n = c_out * k * c_in
    points = (weight.new_empty(36 * n) if out is None else out[: 36 * n]).view(36, k, c_out, c_in)
    operator = _KERNEL_9_TO_36.to(weight.dtype)
    rows = max(1, KERNEL_TRANSFORM_CHUNK_BYTES // (36 * c_in * weight.element_size()))
    for tap in range(k):
        for first in range(0, c_out, rows):
            last = min(c_out, first + rows)
            slices = weight[first:last, :, tap].reshape((last - first) * c_in, 9)  # a view
            torch.mm(operator, slices.T, out=points[:, tap, first:last].view(36, (last - first) * c_in))
    return points


def winograd_conv3d(frames: Tensor, weight: Tensor, bias: Tensor | None,
                    settings: WinogradSettings = DEFAULT_SETTINGS, workspace_bytes: int | None = None) -> Tensor:
    """`F.conv3d(frames, weight, bias, padding=(0, 1, 1))` for a (k, 3, 3) kernel, stride 1.

    frames: (B, C_in, T, H, W), any strides; returns (B, C_out, T - k + 1, H, W), contiguous.
    `workspace_bytes` bounds a block of the transformed input (default: from `settings`).
    """
    b, c_in, t, h, w = frames.shape
    c_out, _, k = weight.shape[:3]
    t_out = t - k + 1
    if t_out <= 0:
        return frames.new_empty((b, c_out, 0, h, w))
    tiles_h, tiles_w = -(-h // TILE), -(-w // TILE)
    out = frames.new_empty((b, c_out, t_out, tiles_h, TILE, tiles_w, TILE))  # tiles, then cropped
    kernel_bytes = 4 * 36 * k * c_in * c_out
    keeps_kernel = kernel_bytes <= 2 * settings.kernel_block_bytes
    if settings.by_columns and keeps_kernel and kernel_bytes > frames.numel() * frames.element_size():
        _convolve_by_columns(frames, weight, out)  # buffers a fraction of the input's: no blocks
        return _finish(out, bias, h, w)
    # Blocks of the transformed input: bands of tile rows over all frames (tiles do not overlap in
    # the transform domain, so bands cost nothing extra); only a clip too long for one tile row
    # is also cut in time, which transforms k - 1 frames twice at each cut.
    if workspace_bytes is None:
        workspace_bytes = settings.kept_kernel_workspace_bytes if keeps_kernel else settings.workspace_bytes
    row_bytes = 4 * 36 * b * c_in * tiles_w  # one tile row of one frame
    frames_per_block = min(t_out, max(1, workspace_bytes // row_bytes - (k - 1)))
    rows_per_band = max(1, min(tiles_h, workspace_bytes // (row_bytes * (frames_per_block + k - 1))))
    blocks = [(t0, min(t_out, t0 + frames_per_block), r0, min(tiles_h, r0 + rows_per_band))
              for t0 in range(0, t_out, frames_per_block) for r0 in range(0, tiles_h, rows_per_band)]
    # Transformed kernels are 4x the weights: made once per call where they are small (up to
    # 64 MB: 384 channels, 3 taps) and the input is no smaller (else `_convolve_by_columns`, above),
    # else a slice of output channels at a time, per block (bounded memory, and buffers small
    # enough for the allocator to reuse).
    whole_kernel = None
    if len(blocks) > 1 and keeps_kernel:
        whole_kernel = transform_kernel(weight)  # (36, k, C_out, C_in)
    channels = c_out if whole_kernel is not None else max(1, settings.kernel_block_bytes // (4 * 36 * k * c_in))
    # Every slice reuses the same buffer: fresh ones paid their page faults again each time
    # (more than half of the transform's time on 768 channels).
    buffer = None if whole_kernel is not None else weight.new_empty(36 * min(channels, c_out) * k * c_in)
    for t0, t1, r0, r1 in blocks:
        points = _input_points(frames[:, :, t0 : t1 + k - 1], r0, r1, tiles_w)  # (36, B, C_in, t, n)
        for first in range(0, c_out, channels):
            last = min(c_out, first + channels)
            kernel = whole_kernel if whole_kernel is not None else transform_kernel(weight[first:last], buffer)
            products = _products(points, kernel, t1 - t0)  # (36, B, c, t1 - t0, n)
            if last == c_out:
                del points, kernel  # before the output transform's buffers: a lower peak
                if (t1, r1) == (t_out, tiles_h):  # the last block: the kernel buffer too
                    buffer = whole_kernel = None
            _output_tiles(products, out[:, first:last, t0:t1, r0:r1])
            del products
    return _finish(out, bias, h, w)


def _convolve_by_columns(frames: Tensor, weight: Tensor, out: Tensor) -> None:
    """The convolution into the tiled `out` (B, C_out, T_out, tiles_h, 4, tiles_w, 4), one column
    b of the 6x6 transform at a time: the 6 input points (b, a) of every tile, the 6 kernel
    points (b, a) of every tap, their products, and A^T m A's terms of column b added into `out`.

    Every buffer is 6/36 of the whole call's (the kernel's: 6 of 36 points for all taps), and
    each point is made once: the input and the weight are read once per column.
    """
    b, c_in, t, h, w = frames.shape
    c_out, _, k = weight.shape[:3]
    t_out = t - k + 1
    tiles_h, tiles_w = out.shape[3], out.shape[5]
    n = tiles_h * tiles_w
    images = frames.reshape(b * c_in * t, 1, h, w)
    reach = (0, TILE * tiles_w - w, 0, TILE * tiles_h - h)  # where the last tiles reach past the image
    stencils = _INPUT_STENCILS.to(frames.dtype)
    operator = _KERNEL_9_TO_36.to(weight.dtype)
    output = _OUTPUT.to(frames.dtype)
    weight_rows = weight.reshape(c_out, c_in * k * 9)  # per (C_out, C_in): taps, then the 3x3 slice
    rows = max(1, KERNEL_TRANSFORM_CHUNK_BYTES // (WINDOW * k * c_in * weight.element_size()))
    # The stencils' output is laid out [image][a]: made STENCIL_CHUNK_BYTES at a time (with the
    # images' padding, if any), then copied to [a][image].
    images_per_chunk = max(1, STENCIL_CHUNK_BYTES // (WINDOW * n * frames.element_size()))
    points = frames.new_empty((WINDOW, b, c_in, t, n))  # [a]
    kernel = weight.new_empty((WINDOW, k, c_out, c_in))  # [a][tap]
    column = frames.new_empty((TILE, b, c_out, t_out, tiles_h, tiles_w))  # A^T m over a, for column b
    out.zero_()
    tiles = out.permute(6, 4, 0, 1, 2, 3, 5)  # [x][y]: (B, C_out, T_out, tiles_h, tiles_w) each
    for col in range(WINDOW):
        group = slice(WINDOW * col, WINDOW * (col + 1))
        for first in range(0, images.shape[0], images_per_chunk):  # (B C_in T, 6, tiles_h, tiles_w) each
            chunk = images[first : first + images_per_chunk]
            made = F.conv2d(F.pad(chunk, reach) if any(reach) else chunk, stencils[group], stride=TILE, padding=1)
            points.view(WINDOW, -1, tiles_h, tiles_w)[:, first : first + made.shape[0]].copy_(made.transpose(0, 1))
        del made
        # All taps of these points in one product: an operator over a weight row's k 3x3 slices
        # (row (a, tap) reads tap's slice), a few output channels at a time (the weight read
        # once, from cache).
        per_tap = operator.new_zeros((WINDOW, k, k, 9))  # [a][tap] x [tap'][slice]
        for tap in range(k):
            per_tap[:, tap, tap] = operator[group]
        flat = kernel.view(WINDOW * k, c_out * c_in)
        for first in range(0, c_out, rows):
            last = min(c_out, first + rows)
            torch.mm(per_tap.view(WINDOW * k, k * 9), weight_rows[first:last].reshape(-1, k * 9).T,
                     out=flat[:, first * c_in : last * c_in])
        products = _products(points, kernel, t_out)  # (6, B, C_out, t_out, n)
        torch.mm(output, products.view(WINDOW, -1), out=column.view(TILE, -1))
        del products
        for x in range(TILE):
            weight_x = float(_OUTPUT[x, col])
            if weight_x:
                tiles[x].add_(column, alpha=weight_x)


def _finish(out: Tensor, bias: Tensor | None, h: int, w: int) -> Tensor:
    """The tiled output (B, C_out, T, tiles_h, 4, tiles_w, 4) as a video: bias added, cropped
    to the input's sides."""
    b, c_out, t_out, tiles_h, _, tiles_w, _ = out.shape
    result = out.view(b, c_out, t_out, tiles_h * TILE, tiles_w * TILE)
    if bias is not None:
        result.add_(bias.view(1, -1, 1, 1, 1))
    if tiles_h * TILE != h or tiles_w * TILE != w:
        result = result[..., :h, :w].contiguous()
    return result


def _input_points(frames: Tensor, first_row: int, last_row: int, tiles_w: int) -> Tensor:
    """B^T d B for tile rows [first_row, last_row) of the zero-padded frames: every 6x6 tile, stride 4."""
    b, c, t, h, w = frames.shape
    tiles_h = last_row - first_row
    bt = _INPUT.to(frames.dtype)
    # Padded rows 4*first_row .. 4*last_row + 2 are image rows one above each (row -1 is padding).
    top, bottom = TILE * first_row - 1, TILE * last_row + 1
    padded = frames.new_zeros((b, c, t, TILE * tiles_h + 2, TILE * tiles_w + 2))
    src_top, src_bottom = max(0, top), min(h, bottom)
    padded[:, :, :, src_top - top : src_bottom - top, 1 : w + 1] = frames[:, :, :, src_top:src_bottom]
    # Rows: gather the six row phases (contiguous rows, cheap), then one small matrix product.
    rows = frames.new_empty((WINDOW, b, c, t, tiles_h, padded.shape[-1]))
    for i in range(WINDOW):
        rows[i] = padded[:, :, :, i : i + TILE * tiles_h : TILE]
    del padded
    rows = (bt @ rows.view(WINDOW, -1)).view(WINDOW, b, c, t, tiles_h, -1)  # [a] row points
    cols = frames.new_empty((WINDOW, WINDOW, b, c, t, tiles_h, tiles_w))  # [j][a]
    for j in range(WINDOW):
        cols[j] = rows[..., j : j + TILE * tiles_w : TILE]
    del rows
    return (bt @ cols.view(WINDOW, -1)).view(36, b, c, t, tiles_h * tiles_w)  # [b][a]


def _products(points: Tensor, kernel: Tensor, t_out: int) -> Tensor:
    """The convolution in the transform domain: per point, sum over taps of (C_out, C_in) @ (C_in, t*n).

    points: (P, B, C_in, T, n); kernel: (P, k, C_out, C_in), for the same P points."""
    n_points, b, c_in, _, n = points.shape
    k, c_out = kernel.shape[1], kernel.shape[2]
    products = points.new_empty((n_points, b, c_out, t_out * n))
    for i in range(b):
        acc = products[:, i]
        # Frames tap..tap+t_out of (C_in, T, n) are a strided (C_in, t_out*n) matrix: no copy.
        torch.bmm(kernel[:, 0], points[:, i, :, 0:t_out].reshape(n_points, c_in, t_out * n), out=acc)
        for tap in range(1, k):
            acc.baddbmm_(kernel[:, tap], points[:, i, :, tap : tap + t_out].reshape(n_points, c_in, t_out * n))
    return products.view(n_points, b, c_out, t_out, n)


def _output_tiles(products: Tensor, out: Tensor) -> None:
    """A^T m A for every tile, written into `out` (B, C_out, t, tiles_h, 4, tiles_w, 4)."""
    at = _OUTPUT.to(products.dtype)
    rest = products[0].numel()
    half = (at @ products.view(WINDOW, WINDOW * rest)).view(TILE, WINDOW, rest)  # [b'][a]
    tiles = torch.matmul(at, half)  # (4[b'], 4[a'], rest)
    b, c_out, t, tiles_h, _, tiles_w, _ = out.shape
    # out[..., y, a', x, b'] = tiles[b', a', ..., y, x]
    out.permute(6, 4, 0, 1, 2, 3, 5).copy_(tiles.view(TILE, TILE, b, c_out, t, tiles_h, tiles_w))
