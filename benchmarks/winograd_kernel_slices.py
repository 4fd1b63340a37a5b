"""What a Winograd call's memory costs in time: by transform columns, the kernel whole, or in slices.

One 3x3x3 convolution of the L encoder's level 2 at a 17x128x128 input (384 channels, 11 frames
of 32x32) runs under each policy, alternating, `--reps` times after a warm-up: median wall time
and the call's peak tensor memory over its input (`model.tensor_memory`). A policy sets the
`WinogradSettings` fields (`by_columns`, kernel slice size, input block size) of its calls. This layer's 61 MB transformed kernel outweighs its 17 MB input, so by default it goes
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
from model.fast_path import WinogradSettings  # noqa: E402
from model.fast_path.winograd import winograd_conv3d  # noqa: E402
from model.tensor_memory import peak_live_bytes  # noqa: E402

MB = 2**20
# (label, by columns, kernel slice MB, input block MB). Without columns a kernel up to twice
# `kernel_block_bytes` (the slice size) is kept whole, a larger one goes in slices of output
# channels, transformed again for every input block.
POLICIES = [("by transform columns (default)", True, 32, 16),
            ("whole kernel, 16 MB blocks", False, 32, 16),
            ("16 MB slices, 16 MB blocks", False, 16, 16), ("16 MB slices, 8 MB blocks", False, 16, 8),
            ("8 MB slices, 16 MB blocks", False, 8, 16), ("8 MB slices, 12 MB blocks", False, 8, 12),
            ("8 MB slices, 8 MB blocks", False, 8, 8), ("4 MB slices, 8 MB blocks", False, 4, 8)]


def _settings(by_columns: bool, slice_mb: int, block_mb: int) -> WinogradSettings:
    return WinogradSettings(by_columns=by_columns, kernel_block_bytes=slice_mb * MB,
                            kept_kernel_workspace_bytes=block_mb * MB, workspace_bytes=block_mb * MB)


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
    policies = [(label, _settings(*fields)) for label, *fields in POLICIES]
    times: dict[str, list[float]] = {label: [] for label, _ in policies}
    peaks: dict[str, float] = {}
    with torch.inference_mode():
        expected = F.conv3d(x, weight, bias, padding=(0, 1, 1))
        for label, settings in policies:  # warm-up, check, peak
            diff = (winograd_conv3d(x, weight, bias, settings) - expected).abs().max().item()
            if diff > 1e-3:
                raise SystemExit(f"{label}: max |diff| {diff:.1e} against direct convolution")
            peaks[label] = peak_live_bytes(partial(winograd_conv3d, x, weight, bias, settings)) / MB
        for _ in range(args.reps):
            for label, settings in policies:
                start = time.perf_counter()
                winograd_conv3d(x, weight, bias, settings)
                times[label].append(time.perf_counter() - start)
    print(f"cpu fp32, {args.threads} threads, {channels} channels, {frames}x{side}x{side}, medians of {args.reps}")
    print("| kernel / input blocks | call ms | call peak over its input MB |")
    print("| --- | ---: | ---: |")
    for label, *_ in POLICIES:
        print(f"| {label} | {statistics.median(times[label]) * 1e3:.0f} | {peaks[label]:.1f} |")


if __name__ == "__main__":
    main()
