"""Encode/decode speed and peak memory: WF-VAE (S, L, L chunked) against peer video VAEs, side by side.

Every (model, operation, clip size) case runs in a fresh subprocess, so its peak memory is its
own: the process builds the model (random weights, seed 0) and the input, warms up on a small
clip, resets the kernel's peak-RSS mark (`/proc/self/clear_refs`), runs the full clip once to
read the peak, then times `--reps` more runs. Times are medians; ratios compare each row with
WF-VAE-L measured in the same run. Cases run in rounds (every model once, then again), so load
from other processes on the machine falls on all of them alike.

    python benchmarks/model_speed.py                          # 17x128x128, all models
    python benchmarks/model_speed.py --sizes 33x256x256 --reps 1
    python benchmarks/model_speed.py --official-src /tmp/wfvae-official   # adds the official code

Peers come from diffusers (`pip install -e '.[bench]'`), built from their default configs:
`AutoencoderKLWan` (Wan 2.1), `AutoencoderKLCogVideoX` (CogVideoX-2b), `AutoencoderKLHunyuanVideo`.
The official WF-VAE implementation is never part of this repository: `--official-src` points at
a checkout of github.com/PKU-YuanGroup/WF-VAE elsewhere; it gets the same weights as ours (the
state-dict keys are equal) and `--check` compares their outputs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
MODELS = ("wfvae-L", "wfvae-L-chunked", "wfvae-L-direct", "wfvae-S", "wan", "cogvideox", "hunyuan")
OFFICIAL = "wfvae-L-official"
REFERENCE = "wfvae-L"  # ratios are other / this
LATENT_CHANNELS = 16  # all compared models: 16 latent channels, 4x8x8 compression
ENCODE_CHUNK_FRAMES = 16  # the chunked-encode check
DECODE_CHUNK_LATENTS = 2  # bounds decode memory (8 video frames a chunk)
LABELS = {
    "wfvae-L": "WF-VAE-L (ours)",
    "wfvae-L-chunked": f"WF-VAE-L (ours), chunked {ENCODE_CHUNK_FRAMES} frames / {DECODE_CHUNK_LATENTS} latents",
    "wfvae-L-direct": "WF-VAE-L (ours), direct convolutions only (no Winograd)",
    "wfvae-S": "WF-VAE-S (ours)",
    OFFICIAL: "WF-VAE-L, official implementation",
    "wan": "diffusers AutoencoderKLWan (Wan 2.1)",
    "cogvideox": "diffusers AutoencoderKLCogVideoX (2b)",
    "hunyuan": "diffusers AutoencoderKLHunyuanVideo",
}


# -- one case, in its own process ---------------------------------------------------------------
def _build(name: str, official_src: str | None) -> tuple[Any, Any, Any]:
    """(module, encode fn, decode fn) for a model name; random weights from seed 0."""
    import torch

    torch.manual_seed(0)
    if name.startswith("wfvae"):
        sys.path.insert(0, str(REPO_ROOT))
        from model import WFVAE, preset

        ours = WFVAE(preset("S" if name == "wfvae-S" else "L", LATENT_CHANNELS)).eval()
        if name == OFFICIAL:
            return _official(ours, official_src)
        if name == "wfvae-L-chunked":
            return (ours, lambda x: ours.encode(x, chunk_frames=ENCODE_CHUNK_FRAMES).mean,
                    lambda z: ours.decode(z, chunk_latents=DECODE_CHUNK_LATENTS))
        if name == "wfvae-L-direct":
            from model.winograd import direct_convolution

            def encode_direct(x: Any) -> Any:
                with direct_convolution():
                    return ours.encode(x).mean

            def decode_direct(z: Any) -> Any:
                with direct_convolution():
                    return ours.decode(z)

            return ours, encode_direct, decode_direct
        return ours, lambda x: ours.encode(x).mean, lambda z: ours.decode(z)
    import diffusers

    cls = {"wan": diffusers.AutoencoderKLWan, "cogvideox": diffusers.AutoencoderKLCogVideoX,
           "hunyuan": diffusers.AutoencoderKLHunyuanVideo}[name]
    vae = cls().eval()
    return vae, lambda x: vae.encode(x).latent_dist.mean, lambda z: vae.decode(z).sample


def _official(ours: Any, official_src: str | None) -> tuple[Any, Any, Any]:
    if not official_src:
        raise SystemExit("--official-src is required for the official implementation")
    sys.path.insert(0, official_src)
    from causalvideovae.model.vae.modeling_wfvae import WFVAEModel

    config = {k: v for k, v in ours.config.to_official_dict().items() if not k.startswith("_")}
    official = WFVAEModel(**config).eval()
    official.load_state_dict(ours.state_dict(), strict=True)
    return official, lambda x: official.encode(x).latent_dist.mean, lambda z: official.decode(z).sample


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    import torch

    torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["dtype"]]
    vae, encode, decode = _build(case["model"], case.get("official_src"))
    vae.to(device=device, dtype=dtype)
    t, h, w = case["size"]
    gen = torch.Generator().manual_seed(1)
    if case["op"] == "encode":
        fn, full = encode, torch.rand(1, 3, t, h, w, generator=gen) * 2 - 1
        small = full[:, :, :5, :64, :64]
    else:
        fn, full = decode, torch.randn(1, LATENT_CHANNELS, (t - 1) // 4 + 1, h // 8, w // 8, generator=gen)
        small = full[:, :, :2, :8, :8]
    full, small = full.to(device, dtype), small.to(device, dtype)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode():
        fn(small)  # warm-up: kernels, allocator, lazy imports
        sync()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            base = _rss_mb("VmRSS")
        times = []
        for _ in range(1 + case["reps"]):
            start = time.perf_counter()
            out = fn(full)
            sync()
            times.append(time.perf_counter() - start)
            if len(times) == 1:
                peak = (torch.cuda.max_memory_allocated() - base) / 2**20 if device.type == "cuda" else _rss_mb("VmHWM") - base
            del out
    # With reps, the first full run is the peak-memory run (it pays first-touch page faults).
    timed = times[1:] or times
    return {"times": timed, "peak_mb": peak}


def check_official(official_src: str, size: tuple[int, int, int], threads: int) -> str:
    """Max |official - ours| of moments' mean and of the decoded clip, identical weights."""
    import torch

    torch.set_num_threads(threads)
    ours, enc, dec = _build("wfvae-L", None)
    official, off_enc, off_dec = _official(ours, official_src)
    t, h, w = size
    x = torch.rand(1, 3, t, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        mean, mean_official = enc(x), off_enc(x)
        video, video_official = dec(mean), off_dec(mean)
    return (f"official vs ours, {t}x{h}x{w}: mean max|diff| {(mean - mean_official).abs().max().item():.2e}, "
            f"decoded max|diff| {(video - video_official).abs().max().item():.2e}")


# -- the driver ----------------------------------------------------------------------------------
def _spawn(case: dict[str, Any]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(results: dict[tuple[str, str, str], list[dict[str, Any]]], models: list[str],
                sizes: list[str], header: str) -> None:
    print(f"\n{header}")
    print("| clip | model | encode s | encode peak MB | decode s | decode peak MB "
          "| WF-VAE-L encode speed-up | decode speed-up | encode mem ratio | decode mem ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    def stats(size: str, model: str, op: str) -> tuple[float | None, float | None]:
        runs = [r for r in results.get((size, model, op), []) if "times" in r]
        if not runs:
            return None, None
        times = [t for r in runs for t in r["times"]]
        return statistics.median(times), statistics.median(r["peak_mb"] for r in runs)

    for size in sizes:
        ref = {op: stats(size, REFERENCE, op) for op in ("encode", "decode")}
        for model in models:
            cells = []
            for op in ("encode", "decode"):
                cells += [_fmt(stats(size, model, op)[0], ".2f"), _fmt(stats(size, model, op)[1], ".0f")]
            ratios = []
            for op, index in (("encode", 0), ("decode", 0), ("encode", 1), ("decode", 1)):
                mine, theirs = ref[op][index], stats(size, model, op)[index]
                if index == 0:  # speed-up of ours: their time / our time
                    ratios.append(_fmt(theirs / mine if mine and theirs else None, ".2f") + "x")
                else:  # memory of ours relative to theirs
                    ratios.append(_fmt(mine / theirs if mine and theirs else None, ".2f"))
            print(f"| {size} | {LABELS[model]} | " + " | ".join(cells + ratios) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="17x128x128", help="comma-separated TxHxW clips")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ops", default="encode,decode")
    parser.add_argument("--official-src", help="a checkout of PKU-YuanGroup/WF-VAE (outside this repo)")
    parser.add_argument("--check", action="store_true", help="compare official and our outputs first")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per process after the peak run")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per case, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--json", help="also write every raw result here")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    models = args.models.split(",")
    if args.official_src and OFFICIAL not in models:
        models.insert(1, OFFICIAL)
    sizes = args.sizes.split(",")
    if args.check and args.official_src:
        t, h, w = (int(v) for v in sizes[0].split("x"))
        print(check_official(args.official_src, (min(t, 9), min(h, 64), min(w, 64)), args.threads), flush=True)
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for size in sizes:
        for round_ in range(args.rounds):
            order = models if round_ % 2 == 0 else models[::-1]
            for op in args.ops.split(","):
                for model in order:
                    case = {"model": model, "op": op, "size": [int(v) for v in size.split("x")],
                            "reps": args.reps, "threads": args.threads, "device": args.device,
                            "dtype": args.dtype, "official_src": args.official_src}
                    result = _spawn(case)
                    results.setdefault((size, model, op), []).append(result)
                    print(f"{size} {model} {op}: {result}", file=sys.stderr, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"|".join(k): v for k, v in results.items()}, indent=1))
    print_table(results, models, sizes,
                f"{args.device} {args.dtype}, {args.threads} threads, medians of {args.reps} runs x {args.rounds} "
                f"process(es) after a warm-up; peak memory over the process's baseline")


if __name__ == "__main__":
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    main()
