"""What a Winograd call's memory costs in time: by transform columns, the kernel whole, or in slices.

One 3x3x3 convolution of the L encoder's level 2 at a 17x128x128 input (384 channels, 11 frames
of 32x32) runs under each policy, alternating, `--reps` times after a warm-up: median wall time
and the call's peak tensor memory over its input (`model.tensor_memory`). A policy sets the
module's switches and block constants (`BY_COLUMNS`, kernel slice size, input block size) for its
calls only. This layer's 61 MB transformed kernel outweighs its 17 MB input, so by default it goes
one transform column at a time; the alternative keeps it whole beside 16 MB input blocks.

    python benchmarks/winograd_kernel_slices.py --threads 2 --reps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model import winograd  # noqa: E402
from model.tensor_memory import peak_live_bytes  # noqa: E402

MB = 2**20
# (label, by columns, kernel slice MB, input block MB). Without columns a kernel up to twice
# `KERNEL_BLOCK_BYTES` (the slice size) is kept whole, a larger one goes in slices of output
# channels, transformed again for every input block.
POLICIES = [("by transform columns (default)", True, 32, 16),
            ("whole kernel, 16 MB blocks", False, 32, 16),
            ("16 MB slices, 16 MB blocks", False, 16, 16), ("16 MB slices, 8 MB blocks", False, 16, 8),
            ("8 MB slices, 16 MB blocks", False, 8, 16), ("8 MB slices, 12 MB blocks", False, 8, 12),
            ("8 MB slices, 8 MB blocks", False, 8, 8), ("4 MB slices, 8 MB blocks", False, 4, 8)]


def _apply(by_columns: bool, slice_mb: int, block_mb: int) -> None:
    winograd.BY_COLUMNS = by_columns
    winograd.KERNEL_BLOCK_BYTES = slice_mb * MB
    winograd.KEPT_KERNEL_WORKSPACE_BYTES = winograd.WORKSPACE_BYTES = block_mb * MB


def _call(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return winograd.winograd_conv3d(x, weight, bias)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--shape", default="384,11,32", help="channels,frames,side")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    channels, frames, side = (int(v) for v in args.shape.split(","))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, channels, frames, side, side, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, 3, generator=gen) / (27 * channels) ** 0.5
    bias = torch.randn(channels, generator=gen)
    names = ("BY_COLUMNS", "KERNEL_BLOCK_BYTES", "KEPT_KERNEL_WORKSPACE_BYTES", "WORKSPACE_BYTES")
    shipped = {name: getattr(winograd, name) for name in names}
    times: dict[str, list[float]] = {label: [] for label, *_ in POLICIES}
    peaks: dict[str, float] = {}
    try:
        with torch.inference_mode():
            expected = F.conv3d(x, weight, bias, padding=(0, 1, 1))
            for label, by_columns, slice_mb, block_mb in POLICIES:  # warm-up, check, peak
                _apply(by_columns, slice_mb, block_mb)
                diff = (_call(x, weight, bias) - expected).abs().max().item()
                if diff > 1e-3:
                    raise SystemExit(f"{label}: max |diff| {diff:.1e} against direct convolution")
                peaks[label] = peak_live_bytes(partial(_call, x, weight, bias)) / MB
            for _ in range(args.reps):
                for label, by_columns, slice_mb, block_mb in POLICIES:
                    _apply(by_columns, slice_mb, block_mb)
                    start = time.perf_counter()
                    _call(x, weight, bias)
                    times[label].append(time.perf_counter() - start)
    finally:
        for name, value in shipped.items():
            setattr(winograd, name, value)
    print(f"cpu fp32, {args.threads} threads, {channels} channels, {frames}x{side}x{side}, medians of {args.reps}")
    print("| kernel / input blocks | call ms | call peak over its input MB |")
    print("| --- | ---: | ---: |")
    for label, *_ in POLICIES:
        print(f"| {label} | {statistics.median(times[label]) * 1e3:.0f} | {peaks[label]:.1f} |")


if __name__ == "__main__":
    main()
