"""What a causal residual block's memory costs in time: whole, or in slabs of frames as a stream.

One `ResnetBlock3D` (random weights, LayerNorm) runs over one clip whole and in slabs of each
given size (`model.fast_path.causal_slabs.run_block_in_slabs`), alternating, `--reps` times after a
warm-up: median and best wall time, and the call's peak tensor memory beside its input
(`model.tensor_memory`). The default is the L decoder's 384-channel block at 64x64 for a
17x128x128 clip (9 frames), the decoder's peak before the slabs; by default it now runs in 3 slabs
of 3 frames (`SlabSettings.max_slabs`, `.min_slab_frames`).

    python benchmarks/causal_slabs.py --threads 2 --reps 4
    python benchmarks/causal_slabs.py --shape 384,192,9,64 --frames 3,5  # layer.0, changes channels
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from model.causal import WHOLE_CLIP  # noqa: E402
from model.fast_path.causal_slabs import run_block_in_slabs  # noqa: E402
from model.layers import ResnetBlock3D  # noqa: E402
from model.tensor_memory import peak_live_bytes  # noqa: E402

MB = 2**20
WHOLE = 0  # slab size standing for the plain block call


def _run(block: ResnetBlock3D, x: torch.Tensor, frames: int) -> torch.Tensor:
    """The block over a copy of `x` (the slabs write over their input)."""
    own = x.clone()
    if frames == WHOLE:
        return block(own, WHOLE_CLIP)
    return run_block_in_slabs(block, own, WHOLE_CLIP, frames)


def _positive_ints(count: int | None):
    """An argparse type: comma-separated positive integers (exactly `count` of them if given)."""
    def parse(text: str) -> list[int]:
        try:
            values = [int(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
        if any(v < 1 for v in values) or (count is not None and len(values) != count):
            wanted = f"{count} positive integers" if count else "positive integers"
            raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}")
        return values
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reps", type=int, default=4)
    parser.add_argument("--shape", type=_positive_ints(4), default="384,384,9,64",
                        help="in channels,out channels,frames,side")
    parser.add_argument("--frames", type=_positive_ints(None), default="5,3,2",
                        help="slab sizes to compare with the whole clip")
    args = parser.parse_args()
    if args.reps < 1 or args.threads < 1:
        parser.error("--reps and --threads must be positive")
    torch.set_num_threads(args.threads)
    c_in, c_out, t, side = args.shape
    sizes = [WHOLE, *args.frames]
    torch.manual_seed(0)
    block = ResnetBlock3D(c_in, c_out, "layernorm", 0.0).eval()
    block.conv1.cache_key, block.conv2.cache_key = "conv1", "conv2"
    if block.nin_shortcut is not None:
        block.nin_shortcut.cache_key = "nin_shortcut"
    x = torch.randn(1, c_in, t, side, side, generator=torch.Generator().manual_seed(1))
    input_mb = x.numel() * x.element_size() / MB
    times: dict[int, list[float]] = {f: [] for f in sizes}
    peaks: dict[int, float] = {}
    with torch.inference_mode():
        expected = _run(block, x, WHOLE)
        for f in sizes:  # warm-up, check, peak
            diff = (_run(block, x, f) - expected).abs().max().item()
            if diff > 1e-4:
                raise SystemExit(f"slabs of {f}: max |diff| {diff:.1e} against the whole clip")
            # Less the input's copy, which the call makes and the decoder already holds.
            peaks[f] = peak_live_bytes(lambda f=f: _run(block, x, f)) / MB - input_mb
        for rep in range(args.reps):
            for f in sizes if rep % 2 == 0 else sizes[::-1]:
                own = x.clone()
                start = time.perf_counter()
                if f == WHOLE:
                    block(own, WHOLE_CLIP)
                else:
                    run_block_in_slabs(block, own, WHOLE_CLIP, f)
                times[f].append(time.perf_counter() - start)
    base = statistics.median(times[WHOLE])
    print(f"cpu fp32, {args.threads} threads, {c_in}->{c_out} channels, {t}x{side}x{side} "
          f"({input_mb:.0f} MiB input), medians of {args.reps}")
    print("| run | block ms (median / best) | time vs whole | peak beside its input MiB |")
    print("| --- | ---: | ---: | ---: |")
    for f in sizes:
        label = "whole clip" if f == WHOLE else f"slabs of {f} frames"
        med = statistics.median(times[f])
        print(f"| {label} | {med * 1e3:.0f} / {min(times[f]) * 1e3:.0f} | {med / base:.2f}x | {peaks[f]:.1f} |")


if __name__ == "__main__":
    main()
