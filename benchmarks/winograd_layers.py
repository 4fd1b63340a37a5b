"""Winograd against oneDNN's direct convolution on the L preset's wide layers, side by side.

Each layer shape (channels, frames, side) runs both ways, alternating, `--reps` times after a
warm-up; medians of wall time, their ratio, and the max |difference| of the two outputs.

    python benchmarks/winograd_layers.py --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.fast_path.winograd import winograd_conv3d  # noqa: E402

# (channels, input frames, side, temporal taps): 3x3x3 layers of WF-VAE-L at 17x128x128 (the
# encoder's 768 x 7x16x16 and 384 x 11x32x32, the decoder's 896 x 11x32x32) and
# 33x256x256 inputs, then per-frame 3x3 layers (encoder level 1, decoder upsampler), and 128
# channels, below `WinogradSettings.min_channels`
LAYERS = [(768, 7, 16, 3), (384, 11, 32, 3), (896, 11, 32, 3), (384, 19, 64, 3), (384, 11, 128, 3),
          (192, 9, 64, 1), (192, 2, 128, 1), (384, 9, 64, 1), (128, 9, 64, 1)]


def _seconds(fn: Callable[[], torch.Tensor], clock: Callable[[], float] = time.perf_counter) -> float:
    start = clock()
    fn()
    return clock() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="cpu: process CPU seconds per thread (a CPU shared with other work)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.perf_counter if args.clock == "wall" else (lambda: time.process_time() / args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"cpu fp32, {args.threads} threads, {args.clock} clock, medians of {args.reps} runs")
    print("| channels | kernel | frames x side | direct s | Winograd s | speed-up | max abs diff |")
    print("| ---: | --- | --- | ---: | ---: | ---: | ---: |")
    with torch.inference_mode():
        for channels, frames, side, taps in LAYERS:
            x = torch.randn(1, channels, frames, side, side, generator=gen)
            weight = torch.randn(channels, channels, taps, 3, 3, generator=gen) / (9 * taps * channels) ** 0.5
            bias = torch.randn(channels, generator=gen)
            direct = partial(F.conv3d, x, weight, bias, padding=(0, 1, 1))
            winograd = partial(winograd_conv3d, x, weight, bias)
            diff = (direct() - winograd()).abs().max().item()  # also the warm-up
            times: dict[str, list[float]] = {"direct": [], "winograd": []}
            for _ in range(args.reps):
                times["direct"].append(_seconds(direct, clock))
                times["winograd"].append(_seconds(winograd, clock))
            d, w = statistics.median(times["direct"]), statistics.median(times["winograd"])
            print(f"| {channels} | {taps}x3x3 | {frames}x{side}x{side} | {d:.2f} | {w:.2f} | {d / w:.2f}x | {diff:.1e} |")


if __name__ == "__main__":
    main()
