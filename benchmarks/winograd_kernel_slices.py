"""What a Winograd call's memory costs in time: whole transformed kernel against kernel slices.

One 3x3x3 convolution of the L encoder's level 2 at a 17x128x128 input (384 channels, 11 frames
of 32x32) runs under each blocking policy, alternating, `--reps` times after a warm-up: median
wall time and the call's peak tensor memory over its input (`model.tensor_memory`). A policy
sets the module's block constants (kernel slice size, input block size) for its calls only.

    python benchmarks/winograd_kernel_slices.py --threads 2 --reps 4
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model import winograd  # noqa: E402
from model.tensor_memory import peak_live_bytes  # noqa: E402

MB = 2**20
# (label, kernel slice MB, input block MB). The first is the shipped policy for this layer: a
# kernel up to twice `KERNEL_BLOCK_BYTES` (61 MB here) is kept whole, a larger one goes in slices
# of that size, transformed again for every input block; the others force slices.
POLICIES = [("whole kernel, 16 MB blocks (shipped)", 32, 16), ("16 MB slices, 16 MB blocks", 16, 16),
            ("16 MB slices, 8 MB blocks", 16, 8), ("8 MB slices, 16 MB blocks", 8, 16),
            ("8 MB slices, 12 MB blocks", 8, 12), ("8 MB slices, 8 MB blocks", 8, 8),
            ("4 MB slices, 8 MB blocks", 4, 8)]


def _apply(slice_mb: int, block_mb: int) -> None:
    winograd.KERNEL_BLOCK_BYTES = slice_mb * MB
    winograd.KEPT_KERNEL_WORKSPACE_BYTES = winograd.WORKSPACE_BYTES = block_mb * MB


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
    shipped = (winograd.KERNEL_BLOCK_BYTES, winograd.KEPT_KERNEL_WORKSPACE_BYTES, winograd.WORKSPACE_BYTES)
    times: dict[str, list[float]] = {label: [] for label, *_ in POLICIES}
    peaks: dict[str, float] = {}
    try:
        with torch.inference_mode():
            expected = F.conv3d(x, weight, bias, padding=(0, 1, 1))
            for label, slice_mb, block_mb in POLICIES:  # warm-up, check, peak
                _apply(slice_mb, block_mb)
                diff = (winograd.winograd_conv3d(x, weight, bias) - expected).abs().max().item()
                if diff > 1e-3:
                    raise SystemExit(f"{label}: max |diff| {diff:.1e} against direct convolution")
                peaks[label] = peak_live_bytes(lambda: winograd.winograd_conv3d(x, weight, bias)) / MB
            for _ in range(args.reps):
                for label, slice_mb, block_mb in POLICIES:
                    _apply(slice_mb, block_mb)
                    start = time.perf_counter()
                    winograd.winograd_conv3d(x, weight, bias)
                    times[label].append(time.perf_counter() - start)
    finally:
        winograd.KERNEL_BLOCK_BYTES, winograd.KEPT_KERNEL_WORKSPACE_BYTES, winograd.WORKSPACE_BYTES = shipped
    print(f"cpu fp32, {args.threads} threads, {channels} channels, {frames}x{side}x{side}, medians of {args.reps}")
    print("| kernel / input blocks | call ms | call peak over its input MB |")
    print("| --- | ---: | ---: |")
    for label, *_ in POLICIES:
        print(f"| {label} | {statistics.median(times[label]) * 1e3:.0f} | {peaks[label]:.1f} |")


if __name__ == "__main__":
    main()
