"""GPU levers side by side: cuDNN autotuning and the channels-last 3D layout, ours and official.

One process builds each implementation once (random weights, seed 0) and times encode and decode
of one clip under every combination of two switches that need no change to the model:
`torch.backends.cudnn.benchmark` (autotuned convolution algorithms) and channels-last 3D
activations and 3D kernels (the layout of cuDNN's tensor-core kernels). The first full run of a
variant autotunes and is not timed; its outputs are compared with the default variant's.
`--profile` adds the top CUDA kernels of our decoder in bf16 (torch.profiler).

    python benchmarks/gpu_variants.py [--official-src DIR] [--size 33x256x256] [--reps 5] [--profile]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from model_speed import LATENT_CHANNELS, build_model, build_official, clip_sizes  # noqa: E402

VARIANTS = {  # name: (cudnn.benchmark, channels-last 3D)
    "default": (False, False),
    "autotune": (True, False),
    "channels-last": (False, True),
    "autotune+channels-last": (True, True),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def set_layout(module: torch.nn.Module, channels_last: bool) -> None:
    """5D kernels to channels-last 3D (or back); 4D per-frame kernels stay as they are."""
    layout = torch.channels_last_3d if channels_last else torch.contiguous_format
    for param in module.parameters():
        if param.dim() == 5:
            param.data = param.data.contiguous(memory_format=layout)


def time_op(fn: Any, x: torch.Tensor, reps: int) -> tuple[list[float], float, torch.Tensor]:
    """(times, peak MB over the start, output of the untimed first run); peak 0 off CUDA."""
    cuda = x.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated() if cuda else 0
    out = fn(x)  # autotunes when cudnn.benchmark is on
    sync()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if cuda else 0.0
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn(x)
        sync()
        times.append(time.perf_counter() - start)
    return times, peak, out


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def measure(name: str, encode: Any, decode: Any, module: torch.nn.Module, size: tuple[int, int, int],
            reps: int, device: str) -> list[str]:
    t, h, w = size
    gen = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, t, h, w, generator=gen) * 2 - 1
    latent = torch.randn(1, LATENT_CHANNELS, (t - 1) // 4 + 1, h // 8, w // 8, generator=gen)
    rows = []
    for dtype_name, dtype in DTYPES.items():
        module.to(dtype=dtype)
        reference: dict[str, torch.Tensor] = {}
        for variant, (autotune, channels_last) in VARIANTS.items():
            torch.backends.cudnn.benchmark = autotune
            set_layout(module, channels_last)
            layout = torch.channels_last_3d if channels_last else torch.contiguous_format
            cells = []
            for op, fn, x in (("encode", encode, video), ("decode", decode, latent)):
                x = x.to(device, dtype).contiguous(memory_format=layout)
                with torch.inference_mode():
                    fn(x[:, :, :5, :64, :64] if op == "encode" else x[:, :, :2, :8, :8])  # warm-up
                    times, peak, out = time_op(fn, x, reps)
                reference.setdefault(op, out)
                cells += [f"{1000 * statistics.median(times):.1f}", f"{peak:.0f}", f"{relative(out, reference[op]):.1e}"]
            rows.append(f"| {name} | {dtype_name} | {variant} | " + " | ".join(cells) + " |")
            print(rows[-1], flush=True)
    torch.backends.cudnn.benchmark = False
    set_layout(module, False)
    return rows


def profile_decode(size: tuple[int, int, int], top: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    with torch.device("cuda"):
        vae, _, decode = build_model("wfvae-L", None)
    vae.to(dtype=torch.bfloat16)
    t, h, w = size
    z = torch.randn(1, LATENT_CHANNELS, (t - 1) // 4 + 1, h // 8, w // 8, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        decode(z)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            decode(z)
            torch.cuda.synchronize()
    print(f"\nour decoder, bf16, {t}x{h}x{w}, default switches: top CUDA kernels")
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=top, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official-src")
    parser.add_argument("--size", type=clip_sizes, default="33x256x256", help="one TxHxW clip")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--device", default="cuda", help="cpu only to try the script itself")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size[0].split("x"))
    name = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{name}, torch {torch.__version__}, clip {args.size[0]}, medians of {args.reps}; "
          "rel. error against the same implementation's default variant")
    print("| implementation | dtype | variant | encode ms | encode peak MB | encode rel. err "
          "| decode ms | decode peak MB | decode rel. err |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    torch.manual_seed(0)
    with torch.device(args.device):
        ours, encode, decode = build_model("wfvae-L", None)
        if args.official_src:  # same weights, taken before any dtype change
            official, off_encode, off_decode = build_official(ours, args.official_src)
    measure("WF-VAE-L (ours)", encode, decode, ours, size, args.reps, args.device)
    del ours
    if args.official_src:
        measure("WF-VAE-L official", off_encode, off_decode, official, size, args.reps, args.device)
        del official
    if args.profile:
        profile_decode(size, 15)


if __name__ == "__main__":
    main()
