"""Checks of the GPU path on a CUDA machine: the figures its users rely on, printed, with a pass/fail.

The test suite runs on CPUs only; this script is what runs where a GPU is lent (see benchmarks/README):

1. the official reference cases (`tests/reference/wfvae-tiny-parity`, or `--reference`) on
   the GPU in float32, with TF32 off (strict) and on (PyTorch's default for convolutions);
2. Causal Cache on the GPU: chunked encode and decode against whole-clip inference, float32;
3. the pipeline's own encoder (`model.latents.ClipEncoder`, device and dtype `auto`: bfloat16
   on a GPU) with the bundled trained model, against float32 on the CPU for the same clips.

    python benchmarks/gpu_check.py [--reference DIR]

Exit status 1 if a check misses its bound.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from model import default_model_dir, load_wfvae  # noqa: E402
from model.latents import ClipEncoder  # noqa: E402

REFERENCE_BOUND = 1e-4  # the reference README's float32 bound
TF32_BOUND = 1e-2  # TF32 keeps 10 mantissa bits; a real error is far larger
CHUNK_BOUND = 5e-5  # the CPU suite's bound for chunked vs whole
BF16_RELATIVE_BOUND = 2e-2  # ||bf16 - fp32|| / ||fp32|| of the latents


def reference_parity(reference: Path, device: torch.device, tf32: bool) -> float:
    """Largest |ours - official| over the reference cases' moments and decoded clips."""
    torch.backends.cudnn.allow_tf32 = tf32
    vae = load_wfvae(reference, dtype=torch.float32, device=device).eval()
    cases = load_file(str(reference / "cases.safetensors"))
    worst = 0.0
    with torch.inference_mode():
        for index in range(len(cases) // 3):
            x = cases[f"case{index}.input"].to(device)
            moments = vae.encode(x).moments  # (B, 2C, t, h, w)
            mean = moments[:, : vae.config.latent_dim]
            decoded = vae.decode(mean)
            worst = max(worst, (moments.cpu() - cases[f"case{index}.moments"]).abs().max().item(),
                        (decoded.cpu() - cases[f"case{index}.decoded"]).abs().max().item())
    return worst


def chunked_vs_whole(device: torch.device) -> tuple[float, float]:
    """Max |chunked - whole| for encode (4-frame chunks) and decode (1-latent chunks), fp32."""
    torch.backends.cudnn.allow_tf32 = False
    vae = load_wfvae(default_model_dir(), dtype=torch.float32, device=device).eval()
    x = torch.rand(2, 3, 25, 64, 96, generator=torch.Generator().manual_seed(3)).to(device) * 2 - 1
    with torch.inference_mode():
        whole = vae.encode(x).mean
        chunked = vae.encode(x, chunk_frames=4).mean
        decoded = vae.decode(whole)
        decoded_chunked = vae.decode(whole, chunk_latents=1)
    return (chunked - whole).abs().max().item(), (decoded_chunked - decoded).abs().max().item()


def pipeline_encoder_auto() -> tuple[str, float]:
    """ClipEncoder with device/dtype auto vs float32 on the CPU: relative error of the latents."""
    torch.backends.cudnn.allow_tf32 = True  # what a user's process has by default
    clips = [torch.randint(0, 256, (17, 128, 128, 3), generator=torch.Generator().manual_seed(s),
                           dtype=torch.uint8).numpy() for s in range(4)]
    gpu = ClipEncoder(device="auto", dtype="auto")
    cpu = ClipEncoder(device="cpu", dtype="float32")
    fast, exact = gpu.encode_clips(clips), cpu.encode_clips(clips)
    relative = float(((fast - exact) ** 2).sum() ** 0.5 / (exact**2).sum() ** 0.5)
    return f"{gpu.device} {gpu.dtype}", relative


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path,
                        default=REPO_ROOT / "tests" / "reference" / "wfvae-tiny-parity")
    parser.add_argument("--device", default="cuda", help="cpu only to try the script itself")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    checks = []
    strict = reference_parity(args.reference, device, tf32=False)
    checks.append(("official reference cases, fp32, TF32 off: max |diff|", strict, REFERENCE_BOUND))
    loose = reference_parity(args.reference, device, tf32=True)
    checks.append(("official reference cases, fp32, TF32 convolutions: max |diff|", loose, TF32_BOUND))
    encode_gap, decode_gap = chunked_vs_whole(device)
    checks.append(("Causal Cache encode, 4-frame chunks vs whole: max |diff|", encode_gap, CHUNK_BOUND))
    checks.append(("Causal Cache decode, 1-latent chunks vs whole: max |diff|", decode_gap, CHUNK_BOUND))
    precision, relative = pipeline_encoder_auto()
    checks.append((f"ClipEncoder auto ({precision}) vs CPU fp32: relative error", relative, BF16_RELATIVE_BOUND))
    failed = 0
    for name, value, bound in checks:
        ok = value <= bound
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {value:.2e} (bound {bound:.0e})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
