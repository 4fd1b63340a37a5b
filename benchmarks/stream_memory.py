"""Peak memory of chunked vs whole-clip encode and decode as clips grow (Causal Cache, issue 3).

Each case runs in a fresh process: model built with random weights, input made, resident memory
read, then the operation; peak resident memory (ru_maxrss) minus that baseline is reported.

    python benchmarks/stream_memory.py --preset S --size 256 --frames 33 129
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run_case(
    preset: str, size: int, frames: int, op: str, chunk: int | None, threads: int
) -> dict[str, float]:
    import torch

    sys.path.insert(0, str(REPO_ROOT))
    from model import WFVAE
    from model import preset as make_preset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    vae = WFVAE(make_preset(preset, 16)).eval()
    latents = 1 + (frames - 1) // 4
    with torch.inference_mode():
        if op == "encode":
            data = torch.rand(1, 3, frames, size, size) * 2 - 1
        else:
            data = torch.randn(1, 16, latents, size // 8, size // 8)
        baseline = _rss_mb()
        started = time.perf_counter()
        if op == "encode":
            out = vae.encode(data, chunk_frames=chunk).mean
        else:
            out = vae.decode(data, chunk_latents=chunk)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "seconds": seconds,
        "peak_over_baseline_mb": peak - baseline,
        "output_frames": out.shape[2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="S", choices=["S", "M", "L"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, nargs="+", default=[33, 129])
    parser.add_argument("--chunk-frames", type=int, default=16, help="encode chunk (frames)")
    parser.add_argument("--chunk-latents", type=int, default=4, help="decode chunk (latent frames)")
    parser.add_argument("--ops", nargs="+", default=["encode", "decode"])
    parser.add_argument("--modes", nargs="+", default=["chunked", "whole"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:  # child process
        spec = json.loads(args.case)
        print(json.dumps(run_case(**spec)))
        return

    rows = []
    for op in args.ops:
        for mode in args.modes:
            for frames in args.frames:
                chunk = (
                    None
                    if mode == "whole"
                    else (args.chunk_frames if op == "encode" else args.chunk_latents)
                )
                spec = {
                    "preset": args.preset,
                    "size": args.size,
                    "frames": frames,
                    "op": op,
                    "chunk": chunk,
                    "threads": args.threads,
                }
                result = subprocess.run(
                    [sys.executable, __file__, "--case", json.dumps(spec)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                measured = json.loads(result.stdout.strip().splitlines()[-1])
                rows.append((op, mode, frames, chunk, measured))
                print(f"  {op} {mode} T={frames}: {measured}", file=sys.stderr, flush=True)

    print(f"\npreset {args.preset}, {args.size}x{args.size}, fp32, CPU, {args.threads} threads")
    print("| op | mode | chunk | frames | seconds | peak MB over baseline | ratio to shortest |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for op, mode, frames, chunk, m in rows:
        base = next(r[4] for r in rows if r[0] == op and r[1] == mode)
        ratio = m["peak_over_baseline_mb"] / base["peak_over_baseline_mb"]
        print(
            f"| {op} | {mode} | {chunk or '-'} | {frames} | {m['seconds']:.1f} | {m['peak_over_baseline_mb']:.0f} | {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
