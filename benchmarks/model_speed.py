"""Encode/decode speed and peak memory: WF-VAE (S, L, L chunked) against peer video VAEs, side by side.

Every (model, operation, clip size) case runs in a fresh subprocess, so its peak memory is its
own: the process builds the model (random weights, seed 0) and the input, warms up on a small
clip, resets the kernel's peak-RSS mark (`/proc/self/clear_refs`), runs the full clip once to
read the peak resident set (on a GPU, the allocator's peak), on a CPU once more under
torch.profiler for the tensor allocator's peak, then times `--reps` more runs. Times are
medians; ratios compare each row with WF-VAE-L measured in the same run. Cases run in rounds
(every model once, then again), so load from other processes on the machine falls on all of
them alike. With `--device cuda` one process
per model times both operations, and peak memory is the CUDA allocator's tensor memory above
the loaded model (reset per operation); times are then printed in milliseconds.

    python benchmarks/model_speed.py                          # 17x128x128, all models
    python benchmarks/model_speed.py --sizes 33x256x256 --reps 1
    python benchmarks/model_speed.py --official-src /tmp/wfvae-official   # adds the official code
    python benchmarks/model_speed.py --device cuda --dtype bf16 --reps 5 --sizes 17x128x128,33x256x256
    python benchmarks/model_speed.py --dtype bf16 --clock cpu --models wfvae-L,wan,cogvideox \
        --official-src /tmp/wfvae-official      # bf16 on a CPU with AMX, against the peers in bf16

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
sys.path.insert(0, str(REPO_ROOT))  # the `model` package, for every case (peers too: tensor peaks)
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
def build_model(name: str, official_src: str | None) -> tuple[Any, Any, Any]:
    """(module, encode fn, decode fn) for a model name; random weights from seed 0."""
    import torch

    torch.manual_seed(0)
    if name.startswith("wfvae"):
        from model import WFVAE, preset

        ours = WFVAE(preset("S" if name == "wfvae-S" else "L", LATENT_CHANNELS)).eval()
        if name == OFFICIAL:
            return build_official(ours, official_src)
        if name == "wfvae-L-chunked":
            return (ours, lambda x: ours.encode(x, chunk_frames=ENCODE_CHUNK_FRAMES).mean,
                    lambda z: ours.decode(z, chunk_latents=DECODE_CHUNK_LATENTS))
        if name == "wfvae-L-direct":
            from model import FastPath

            ours.fast_path = FastPath(winograd=False)
        return ours, lambda x: ours.encode(x).mean, lambda z: ours.decode(z)
    import diffusers

    cls = {"wan": diffusers.AutoencoderKLWan, "cogvideox": diffusers.AutoencoderKLCogVideoX,
           "hunyuan": diffusers.AutoencoderKLHunyuanVideo}[name]
    vae = cls().eval()
    return vae, lambda x: vae.encode(x).latent_dist.mean, lambda z: vae.decode(z).sample


def build_official(ours: Any, official_src: str | None) -> tuple[Any, Any, Any]:
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
    """{op: {"times", "peak_mb"}} for the case's ops, one model built once."""
    import torch

    torch.set_num_threads(case["threads"])
    device = torch.device(case["device"])
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[case["dtype"]]
    with device:  # random init on the device: seconds instead of a minute for L on a GPU host's CPU
        vae, encode, decode = build_model(case["model"], case.get("official_src"))
    vae.to(device=device, dtype=dtype)
    return {op: _time_op(case, op, encode if op == "encode" else decode, device, dtype) for op in case["ops"]}


def _time_op(case: dict[str, Any], op: str, fn: Any, device: Any, dtype: Any) -> dict[str, Any]:
    import torch

    t, h, w = case["size"]
    gen = torch.Generator().manual_seed(1)
    if op == "encode":
        full = torch.rand(1, 3, t, h, w, generator=gen) * 2 - 1
        small = full[:, :, :5, :64, :64]
    else:
        full = torch.randn(1, LATENT_CHANNELS, (t - 1) // 4 + 1, h // 8, w // 8, generator=gen)
        small = full[:, :, :2, :8, :8]
    full, small = full.to(device, dtype), small.to(device, dtype)
    cuda = device.type == "cuda"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    with torch.inference_mode():
        fn(small)  # warm-up: kernels, allocator, lazy imports
        sync()
        if cuda:  # tensor memory, so one process can measure several ops
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / 2**20
        else:  # resident memory: needs a fresh process per op
            Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
            base = _rss_mb("VmRSS")
        clock = _clock(case)
        start = clock()
        out = fn(full)
        sync()
        first = clock() - start
        peak = (torch.cuda.max_memory_allocated() / 2**20 if cuda else _rss_mb("VmHWM")) - base
        del out
        # The tensor count runs apart: under torch.profiler, which keeps records per op, our
        # 17x128x128 encode's resident peak rose by about 100 MB and the official code's (fewer,
        # larger ops) by 4 MB, so a shared run misread the resident ratio.
        tensor_peak = None if cuda else _tensor_peak_mb(fn, full)
        times = []
        for _ in range(case["reps"]):
            start = clock()
            out = fn(full)
            sync()
            times.append(clock() - start)
            del out
    # The peak run is left out of the times where there are reps: it pays first-touch page
    # faults (on a GPU, the allocator's first cudaMalloc calls).
    timed = times or [first]
    result = {"times": timed, "peak_mb": peak}
    if tensor_peak is not None:
        result["tensor_peak_mb"] = tensor_peak
    return result


def _clock(case: dict[str, Any]) -> Any:
    """Seconds by the wall clock, or (`--clock cpu`) this process's CPU seconds per thread: on a
    CPU shared with other work, the CPU time a run takes is what the other work leaves alone,
    while its wall time grows with everything else that runs (and so do ratios between cases
    that happen to meet different load)."""
    if case.get("clock", "wall") == "wall":
        return time.perf_counter
    return lambda: time.process_time() / case["threads"]


def _tensor_peak_mb(fn: Any, x: Any) -> float:
    """The peak of CPU tensor memory allocated and not yet freed during fn(x)
    (`model.tensor_memory`: free of what makes peak RSS move between identical processes)."""
    from model.tensor_memory import peak_live_bytes

    return peak_live_bytes(lambda: fn(x)) / 2**20


def check_official(official_src: str, size: tuple[int, int, int], threads: int, device: str) -> str:
    """Max |official - ours| of moments' mean and of the decoded clip, identical weights, fp32."""
    import torch

    torch.set_num_threads(threads)
    torch.backends.cudnn.allow_tf32 = False  # TF32 convolutions alone differ by ~1e-3
    with torch.device(device):
        ours, enc, dec = build_model("wfvae-L", None)
        official, off_enc, off_dec = build_official(ours, official_src)
    t, h, w = size
    x = (torch.rand(1, 3, t, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device)
    with torch.inference_mode():
        mean, mean_official = enc(x), off_enc(x)
        video, video_official = dec(mean), off_dec(mean)
    return (f"official vs ours, {t}x{h}x{w} on {device}: mean max|diff| {(mean - mean_official).abs().max().item():.2e}, "
            f"decoded max|diff| {(video - video_official).abs().max().item():.2e}")


def check_bf16_spread(official_src: str, size: tuple[int, int, int], threads: int) -> str:
    """Ours in bf16 against the official code in bf16, beside the official code's own bf16-vs-fp32
    spread (max |diff| of the latent mean, and of the video decoded from the fp32 mean)."""
    import torch

    torch.set_num_threads(threads)
    ours, enc, dec = build_model("wfvae-L", None)
    official, off_enc, off_dec = build_official(ours, official_src)
    t, h, w = size
    x = torch.rand(1, 3, t, h, w, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.inference_mode():
        mean32 = off_enc(x).float()
        video32 = off_dec(mean32).float()
        official.bfloat16()
        mean_off, video_off = off_enc(x.bfloat16()).float(), off_dec(mean32.bfloat16()).float()
        del official
        ours.bfloat16()
        mean_ours, video_ours = enc(x.bfloat16()).float(), dec(mean32.bfloat16()).float()

    def spread(a: Any, b: Any) -> float:
        return (a - b).abs().max().item()

    return (f"bf16 at {t}x{h}x{w} (max |diff|; mean / decoded): official bf16 vs its fp32 "
            f"{spread(mean_off, mean32):.3e} / {spread(video_off, video32):.3e}; ours bf16 vs official bf16 "
            f"{spread(mean_ours, mean_off):.3e} / {spread(video_ours, video_off):.3e}; ours bf16 vs official fp32 "
            f"{spread(mean_ours, mean32):.3e} / {spread(video_ours, video32):.3e}")


# -- the driver ----------------------------------------------------------------------------------
def _spawn(case: dict[str, Any], timeout: float | None) -> dict[str, Any]:
    try:
        proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)],
                              capture_output=True, text=True, cwd=REPO_ROOT, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"no result within {timeout:.0f} s"}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def clip_sizes(text: str) -> list[str]:
    """argparse type: comma-separated TxHxW clips with T = 1 + 4k and H, W multiples of 8."""
    sizes = text.split(",")
    for size in sizes:
        parts = size.split("x")
        if len(parts) != 3 or not all(p.isdigit() for p in parts):
            raise argparse.ArgumentTypeError(f"{size!r} is not TxHxW (e.g. 17x128x128)")
        t, h, w = (int(p) for p in parts)
        if t % 4 != 1 or h % 8 or w % 8 or not h or not w:
            raise argparse.ArgumentTypeError(f"{size}: frames must be 1 + 4k and sides multiples of 8")
    return sizes


def _device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return device
    import torch

    # The cases run with PyTorch's defaults: TF32 for float32 convolutions, cuDNN's heuristics.
    tf32 = "TF32 convolutions" if torch.backends.cudnn.allow_tf32 else "no TF32"
    return f"{device} ({torch.cuda.get_device_name(device)}, torch {torch.__version__}, {tf32})"


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def print_table(results: dict[tuple[str, str, str], list[dict[str, Any]]], models: list[str],
                sizes: list[str], header: str, unit: str) -> None:
    scale, spec = (1000, ".1f") if unit == "ms" else (1, ".2f")
    print(f"\n{header}")
    # On a CPU each memory cell is "resident set / tensors": tensors are the allocator's peak,
    # the steadier of the two (see _tensor_peak_mb).
    print(f"| clip | model | encode {unit} | encode peak MB | decode {unit} | decode peak MB "
          "| WF-VAE-L encode speed-up | decode speed-up | encode mem ratio | decode mem ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def stats(size: str, model: str, op: str) -> tuple[float | None, list[float | None]]:
        """Median time and median peaks (resident or CUDA, then CPU tensors) of a case."""
        runs = [r for r in results.get((size, model, op), []) if "times" in r]
        if not runs:
            return None, [None, None]
        times = [t for r in runs for t in r["times"]]
        tensors = [r["tensor_peak_mb"] for r in runs if "tensor_peak_mb" in r]
        return statistics.median(times), [statistics.median(r["peak_mb"] for r in runs),
                                          statistics.median(tensors) if tensors else None]

    def memory(values: list[float | None], spec: str) -> str:
        return " / ".join(_fmt(v, spec) for v in values if v is not None) or "-"

    for size in sizes:
        ref = {op: stats(size, REFERENCE, op) for op in ("encode", "decode")}
        for model in models:
            cells = []
            for op in ("encode", "decode"):
                seconds, peaks = stats(size, model, op)
                cells += [_fmt(None if seconds is None else seconds * scale, spec), memory(peaks, ".0f")]
            ratios = []
            for op in ("encode", "decode"):  # speed-up of ours: their time / our time
                mine, theirs = ref[op][0], stats(size, model, op)[0]
                ratios.append(f"{theirs / mine:.2f}x" if mine and theirs else "-")
            for op in ("encode", "decode"):  # memory of ours relative to theirs
                pairs = zip(ref[op][1], stats(size, model, op)[1], strict=True)
                ratios.append(memory([m / t if m and t else None for m, t in pairs], ".2f"))
            print(f"| {size} | {LABELS[model]} | " + " | ".join(cells + ratios) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--sizes", type=clip_sizes, default="17x128x128", help="comma-separated TxHxW clips")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--ops", default="encode,decode")
    parser.add_argument("--official-src", help="a checkout of PKU-YuanGroup/WF-VAE (outside this repo)")
    parser.add_argument("--check", action="store_true", help="compare official and our outputs first")
    parser.add_argument("--reps", type=int, default=3, help="timed runs per process after the peak runs")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per case, interleaved")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                        help="cpu: time runs by process CPU seconds per thread (a CPU shared with other work)")
    parser.add_argument("--case-timeout", type=float, help="seconds before a case's process is given up")
    parser.add_argument("--json", help="also write every raw result here")
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return

    models = args.models.split(",")
    unknown = [m for m in models if m not in LABELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(LABELS)}")
    if OFFICIAL in models and not args.official_src:
        parser.error(f"{OFFICIAL} needs --official-src")
    if args.official_src and OFFICIAL not in models:
        models.insert(1, OFFICIAL)
    sizes = args.sizes
    device_label = _device_name(args.device)
    if args.check and args.official_src:
        t, h, w = (int(v) for v in sizes[0].split("x"))
        print(check_official(args.official_src, (min(t, 9), min(h, 64), min(w, 64)), args.threads, args.device),
              flush=True)
        if args.dtype == "bf16" and args.device == "cpu":
            print(check_bf16_spread(args.official_src, (t, h, w), args.threads), flush=True)
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    ops = args.ops.split(",")
    # CPU peak memory is the process's resident peak, so each op needs its own process; on a GPU
    # the allocator's peak is reset per op and one process per model is enough.
    op_groups = [ops] if args.device.startswith("cuda") else [[op] for op in ops]
    for size in sizes:
        for round_ in range(args.rounds):
            order = models if round_ % 2 == 0 else models[::-1]
            for group in op_groups:
                for model in order:
                    case = {"model": model, "ops": group, "size": [int(v) for v in size.split("x")],
                            "reps": args.reps, "threads": args.threads, "device": args.device,
                            "dtype": args.dtype, "official_src": args.official_src, "clock": args.clock}
                    outcome = _spawn(case, args.case_timeout)
                    for op in group:
                        result = outcome.get(op, outcome)  # an error covers the whole group
                        results.setdefault((size, model, op), []).append(result)
                        print(f"{size} {model} {op}: {result}", file=sys.stderr, flush=True)
                    if args.json:  # after every case, so a run cut short keeps what it measured
                        Path(args.json).write_text(json.dumps({"|".join(k): v for k, v in results.items()}, indent=1))
    print_table(results, models, sizes,
                f"{device_label} {args.dtype}, {args.threads} threads, {args.clock} clock, medians of {max(args.reps, 1)} run(s) x "
                f"{args.rounds} process(es) after a warm-up; peak memory over the baseline "
                f"({'tensor memory' if args.device.startswith('cuda') else 'resident set / CPU tensors'})",
                "ms" if args.device.startswith("cuda") else "s")


if __name__ == "__main__":
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    main()
