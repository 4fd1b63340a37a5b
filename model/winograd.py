"""Winograd F(4x4, 3x3) convolution for CPU inference: the same 3x3 convolution, 4x fewer multiplies.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016). Every 6x6 input
tile and every 3x3 kernel slice are carried into a 36-point transform domain, where the
convolution becomes 36 independent matrix products over channels; a last transform gives 4x4
output tiles. 36 products for 16 outputs instead of 144: on the 2-core AVX2 CPU this project runs
on, oneDNN's direct 3x3x3 convolution runs at 65-77 GFLOP/s (about the machine's GEMM rate), so
cutting the arithmetic is the only way to go faster, and it does: 1.4-2.2x on the L preset's
384-896-channel layers (2 threads, `benchmarks/winograd_layers.py`), 1.5-1.6x for the whole
model (`benchmarks/README.md`, Model speed). Below about 192 channels the transforms, which only move memory, cost more than they
save, so narrow layers stay direct.

The temporal taps of a (k, 3, 3) kernel are summed in the transform domain (k accumulating
matrix products over shifted frames), so one set of transforms serves all k taps. The input is
transformed in bands of tile rows (and, for very long clips, blocks of frames) that keep the
buffers near `WORKSPACE_BYTES` (`KEPT_KERNEL_WORKSPACE_BYTES` beside a whole transformed kernel),
so long clips do not raise peak memory. Within `lean_kernels()`, a kernel that outweighs its
input (short clips at small sides) is never held whole: each block makes it again, one tap and a
few transform points at a time. Results match direct convolution to float32 rounding
(the interpolation points 0, +-1, +-2 keep the transforms' constants small; max abs error
within a few times oneDNN's own).

Only inference on CPU in float32 takes this path (`applies`): under autograd, on GPUs (cuDNN picks
its own algorithms) and in other dtypes the direct convolution runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor, nn

__all__ = [
    "KEPT_KERNEL_WORKSPACE_BYTES",
    "LEAN_WORKSPACE_BYTES",
    "MIN_CHANNELS",
    "MIN_COLUMNS",
    "MIN_FRAME_CHANNELS",
    "POINT_GROUP",
    "WORKSPACE_BYTES",
    "applies",
    "direct_convolution",
    "lean_kernels",
    "winograd_conv3d",
]

TILE = 4  # output tile side
WINDOW = TILE + 2  # input tile side for a 3-tap kernel
# Channels below which the transforms cost more than they save: a 3x3x3 kernel at 128 channels
# ran 0.96x of oneDNN, at 192-384 1.45x.
MIN_CHANNELS = 192
# The same for per-frame 3x3 kernels (one tap carries the transforms alone): 0.99x at 128
# channels, 1.21-1.27x at 192 alone, but no faster inside the encoder (0.98-1.02x, alternating in
# one process) while its buffers raised the encoder's resident peak from 260 to 368 MB at
# 17x128x128; 1.83x at 384 (the decoder's upsampler: decode 1.055x faster in the same A/B).
MIN_FRAME_CHANNELS = 384
# Output frames x 4x4 tiles below which a layer is too small to bother (768 channels, 5 frames of
# 16x16 = 80 columns still ran 1.3x faster than oneDNN).
MIN_COLUMNS = 64
# Smaller blocks than these cost speed: kernels too large to keep (768+ channels) are transformed
# again for every block, and thin kernel slices re-read the transformed input once per slice
# (8 MB slices and input-sized blocks: 2.4x slower on 768 channels at 16x16, 1.7x at 896).
WORKSPACE_BYTES = 32 * 2**20  # transformed input of one block (bands of 32-64 MB ran fastest)
# Beside a whole transformed kernel (up to 64 MB, made once per call), 16 MB blocks lowered the
# L model's 17x128x128 tensor peaks by 13-17% at the same speed; where kernels go in slices,
# re-made for every block, 16 MB blocks ran the decoder 11% slower, so those keep 32 MB.
KEPT_KERNEL_WORKSPACE_BYTES = 16 * 2**20
KERNEL_BLOCK_BYTES = 32 * 2**20  # transformed kernels of one slice of output channels
# A kernel small enough to keep whole can still outweigh the layer's input (short clips at small
# sides: 61 MB for 384 channels beside a 17 MB input at 17x128x128). Within `lean_kernels()` such
# a call makes the kernel again for every block, one tap and POINT_GROUP transform points at a
# time, beside LEAN_WORKSPACE_BYTES blocks: 40 instead of 102 MB over its input at 17x128x128,
# every input point still read once per tap (output-channel slices would read it once per
# slice), at 1.11-1.4x the call's time (`benchmarks/winograd_kernel_slices.py`).
POINT_GROUP = 6
LEAN_WORKSPACE_BYTES = 12 * 2**20

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

_ENABLED: ContextVar[bool] = ContextVar("wfvae_winograd_enabled", default=True)
_LEAN: ContextVar[bool] = ContextVar("wfvae_winograd_lean", default=False)


@contextmanager
def direct_convolution() -> Iterator[None]:
    """Within this block every convolution runs direct (oneDNN), e.g. to compare the two."""
    token = _ENABLED.set(False)
    try:
        yield
    finally:
        _ENABLED.reset(token)


@contextmanager
def lean_kernels() -> Iterator[None]:
    """Within this block a transformed kernel that outweighs its input is never held whole.

    For short clips at small sides: the L encoder's tensor peak at 17x128x128 falls from 136 to
    85 MB (0.73x of the official code's) for about 5% more encode time in fresh processes
    (`benchmarks/README.md`). Larger clips are unchanged: their inputs outweigh the kernels.
    """
    token = _LEAN.set(True)
    try:
        yield
    finally:
        _LEAN.reset(token)


def applies(conv: nn.Conv2d | nn.Conv3d, x: Tensor) -> bool:
    """Whether `conv` (a 3D convolution valid in time, or a 2D one applied per frame) may run on
    the video `x` as a Winograd convolution: CPU float32 inference, a (k,) 3 x 3 kernel with stride
    1 and spatial padding 1, wide enough to pay for the transforms."""
    temporal_padding = conv.padding[0] if isinstance(conv, nn.Conv3d) else 0
    taps = conv.kernel_size[0] if isinstance(conv, nn.Conv3d) else 1
    return (
        _ENABLED.get()
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
        and tuple(conv.kernel_size[-2:]) == (3, 3)
        and all(s == 1 for s in conv.stride)
        and tuple(conv.padding[-2:]) == (1, 1)
        and temporal_padding == 0
        and all(d == 1 for d in conv.dilation)
        and conv.groups == 1
        and min(conv.in_channels, conv.out_channels) >= (MIN_CHANNELS if taps > 1 else MIN_FRAME_CHANNELS)
        and _output_columns(taps, x) >= MIN_COLUMNS
    )


def _output_columns(taps: int, x: Tensor) -> int:
    """Output frames x output tiles: the columns of the transform-domain matrix products."""
    t, h, w = x.shape[2:]
    return (t - taps + 1) * -(-h // TILE) * -(-w // TILE)


def transform_kernel(weight: Tensor, out: Tensor | None = None) -> Tensor:
    """(C_out, C_in, k, 3, 3) -> (36, k, C_out, C_in): G w G^T for every kernel slice, as one
    matrix product per tap with the 36 x 9 operator G (x) G; points ordered [column][row] like
    the input's.

    Each tap's slices are read in place (a (C_out * C_in, 9) view of the weight, rows k * 9 apart)
    and written in place (rows of `out`, a tap apart): no transposed copy of the weight.
    `out`: a flat tensor of at least 36 x C_out*k*C_in elements to reuse.
    """
    c_out, c_in, k = weight.shape[:3]
    n = c_out * k * c_in
    points = (weight.new_empty(36 * n) if out is None else out[: 36 * n]).view(36, k, c_out, c_in)
    operator = _KERNEL_9_TO_36.to(weight.dtype)
    for tap in range(k):
        slices = weight[:, :, tap].reshape(c_out * c_in, 9)  # a view: (C_out, C_in) merge
        torch.mm(operator, slices.T, out=points[:, tap].view(36, c_out * c_in))
    return points


def winograd_conv3d(frames: Tensor, weight: Tensor, bias: Tensor | None,
                    workspace_bytes: int | None = None) -> Tensor:
    """`F.conv3d(frames, weight, bias, padding=(0, 1, 1))` for a (k, 3, 3) kernel, stride 1.

    frames: (B, C_in, T, H, W), any strides; returns (B, C_out, T - k + 1, H, W), contiguous.
    `workspace_bytes` bounds a block of the transformed input (default: see the constants).
    """
    b, c_in, t, h, w = frames.shape
    c_out, _, k = weight.shape[:3]
    t_out = t - k + 1
    if t_out <= 0:
        return frames.new_empty((b, c_out, 0, h, w))
    tiles_h, tiles_w = -(-h // TILE), -(-w // TILE)
    out = frames.new_empty((b, c_out, t_out, tiles_h, TILE, tiles_w, TILE))  # tiles, then cropped
    # Blocks of the transformed input: bands of tile rows over all frames (tiles do not overlap in
    # the transform domain, so bands cost nothing extra); only a clip too long for one tile row
    # is also cut in time, which transforms k - 1 frames twice at each cut.
    kernel_bytes = 4 * 36 * k * c_in * c_out
    keeps_kernel = kernel_bytes <= 2 * KERNEL_BLOCK_BYTES
    by_points = _LEAN.get() and keeps_kernel and kernel_bytes > frames.numel() * frames.element_size()
    if workspace_bytes is None:
        workspace_bytes = (LEAN_WORKSPACE_BYTES if by_points else
                           KEPT_KERNEL_WORKSPACE_BYTES if keeps_kernel else WORKSPACE_BYTES)
    row_bytes = 4 * 36 * b * c_in * tiles_w  # one tile row of one frame
    frames_per_block = min(t_out, max(1, workspace_bytes // row_bytes - (k - 1)))
    rows_per_band = max(1, min(tiles_h, workspace_bytes // (row_bytes * (frames_per_block + k - 1))))
    blocks = [(t0, min(t_out, t0 + frames_per_block), r0, min(tiles_h, r0 + rows_per_band))
              for t0 in range(0, t_out, frames_per_block) for r0 in range(0, tiles_h, rows_per_band)]
    # Transformed kernels are 4x the weights: made once per call where they are small (up to
    # 64 MB: 384 channels, 3 taps) and the input is no smaller (else `_convolve_by_points`), else a
    # slice of output channels at a time, per block (bounded memory, and buffers small enough for
    # the allocator to reuse).
    if by_points:
        _convolve_by_points(frames, weight, blocks, tiles_w, out)
        return _finish(out, bias, h, w)
    whole_kernel = None
    if len(blocks) > 1 and keeps_kernel:
        whole_kernel = transform_kernel(weight)  # (36, k, C_out, C_in)
    channels = c_out if whole_kernel is not None else max(1, KERNEL_BLOCK_BYTES // (4 * 36 * k * c_in))
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


def _convolve_by_points(frames: Tensor, weight: Tensor, blocks: list[tuple[int, int, int, int]],
                        tiles_w: int, out: Tensor) -> None:
    """The blocks' convolution into the tiled `out`, the kernel made again for every block, one
    tap and `POINT_GROUP` transform points at a time: two small buffers instead of the kernel."""
    c_out, c_in, k = weight.shape[:3]
    operator = _KERNEL_9_TO_36.to(weight.dtype)
    tap_slices = weight.new_empty((9, c_out * c_in))  # one tap's 3x3 slices, read whole by each group
    kernel = weight.new_empty((POINT_GROUP, c_out, c_in))
    for t0, t1, r0, r1 in blocks:
        points = _input_points(frames[:, :, t0 : t1 + k - 1], r0, r1, tiles_w)  # (36, B, C_in, t, n)
        b, n, t_out = points.shape[1], points.shape[-1], t1 - t0
        products = points.new_empty((36, b, c_out, t_out * n))
        for tap in range(k):
            tap_slices.copy_(weight[:, :, tap].reshape(c_out * c_in, 9).T)
            for first in range(0, 36, POINT_GROUP):
                group = slice(first, first + POINT_GROUP)
                torch.mm(operator[group], tap_slices, out=kernel.view(POINT_GROUP, c_out * c_in))
                for i in range(b):
                    # Frames tap..tap+t_out of (C_in, T, n): a strided (C_in, t_out*n) matrix, no copy.
                    inputs = points[group, i, :, tap : tap + t_out].reshape(POINT_GROUP, c_in, t_out * n)
                    if tap == 0:
                        torch.bmm(kernel, inputs, out=products[group, i])
                    else:
                        products[group, i].baddbmm_(kernel, inputs)
        del points, inputs  # (a view of points) before the output transform's buffers
        _output_tiles(products.view(36, b, c_out, t_out, n), out[:, :, t0:t1, r0:r1])
        del products


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
    """The convolution in the transform domain: per point, sum over taps of (C_out, C_in) @ (C_in, t*n)."""
    _, b, c_in, _, n = points.shape
    k, c_out = kernel.shape[1], kernel.shape[2]
    products = points.new_empty((36, b, c_out, t_out * n))
    for i in range(b):
        acc = products[:, i]
        # Frames tap..tap+t_out of (C_in, T, n) are a strided (C_in, t_out*n) matrix: no copy.
        torch.bmm(kernel[:, 0], points[:, i, :, 0:t_out].reshape(36, c_in, t_out * n), out=acc)
        for tap in range(1, k):
            acc.baddbmm_(kernel[:, tap], points[:, i, :, tap : tap + t_out].reshape(36, c_in, t_out * n))
    return products.view(36, b, c_out, t_out, n)


def _output_tiles(products: Tensor, out: Tensor) -> None:
    """A^T m A for every tile, written into `out` (B, C_out, t, tiles_h, 4, tiles_w, 4)."""
    at = _OUTPUT.to(products.dtype)
    rest = products[0].numel()
    half = (at @ products.view(WINDOW, WINDOW * rest)).view(TILE, WINDOW, rest)  # [b'][a]
    tiles = torch.matmul(at, half)  # (4[b'], 4[a'], rest)
    b, c_out, t, tiles_h, _, tiles_w, _ = out.shape
    # out[..., y, a', x, b'] = tiles[b', a', ..., y, x]
    out.permute(6, 4, 0, 1, 2, 3, 5).copy_(tiles.view(TILE, TILE, b, c_out, t, tiles_h, tiles_w))
