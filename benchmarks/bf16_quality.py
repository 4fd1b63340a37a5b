"""What bf16 costs in reconstruction quality: the bundled model on held-out bigbuckbunny, bf16 against fp32.

The clips of the README's quality table (`jobs.evaluate`: all 132 frames as 4 clips of 33 frames,
scaled to 256x144), reconstructed whole-clip in float32 and in bfloat16, side by side in one
process. Prints PSNR to the original (mean of per-frame PSNRs, as the table), the bf16
reconstruction against the fp32 one, the latents' largest difference relative to their range,
and each precision's encode + decode time.

    python benchmarks/bf16_quality.py                 # bundled model, 2 threads
    python benchmarks/bf16_quality.py --model DIR --threads 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.tiling_psnr import bigbuckbunny  # noqa: E402
from jobs.evaluate import EvalSettings, load_clips  # noqa: E402
from model import default_model_dir, load_wfvae  # noqa: E402
from model.metrics import psnr_per_frame  # noqa: E402


def reconstruct(vae: torch.nn.Module, clips: list[torch.Tensor], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(latent means, reconstructions in [-1, 1], seconds) over all clips, concatenated in time."""
    latents, videos, seconds = [], [], 0.0
    with torch.inference_mode():
        vae.decode(vae.encode(clips[0][:, :, :5, :64, :64].to(dtype)).mean)  # warm-up
        for clip in clips:
            started = time.perf_counter()
            z = vae.encode(clip.to(dtype)).mean
            video = vae.decode(z)
            seconds += time.perf_counter() - started
            latents.append(z.float())
            videos.append(video.float().clamp(-1, 1))
    return torch.cat(latents, dim=2), torch.cat(videos, dim=2), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(default_model_dir()))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = EvalSettings(videos=[str(bigbuckbunny())], out="-", num_frames=33, height=144, width=256,
                            clips_per_video=4, pictures=False)
    clips = load_clips(settings.videos[0], settings)
    original = torch.cat(clips, dim=2)  # (1, 3, 4 * 33, 144, 256)
    results = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        # force: the figure is wanted on CPUs without AMX too (slowly: bf16 there is not fast).
        vae = load_wfvae(args.model, dtype=name, force_dtype=True)
        results[name] = reconstruct(vae, clips, dtype)
    (z32, y32, s32), (z16, y16, s16) = results["fp32"], results["bf16"]
    latent_range = float(z32.max() - z32.min())
    print(f"model {args.model}; bigbuckbunny, {len(clips)} clips of {tuple(clips[0].shape)}; {args.threads} threads")
    print("| precision | encode + decode s | PSNR to the original (dB) | PSNR to the fp32 reconstruction (dB) |")
    print("| --- | ---: | ---: | ---: |")
    print(f"| fp32 | {s32:.2f} | {float(psnr_per_frame(y32, original).mean()):.3f} | - |")
    print(f"| bf16 | {s16:.2f} | {float(psnr_per_frame(y16, original).mean()):.3f} | "
          f"{float(psnr_per_frame(y16, y32).mean()):.1f} |")
    print(f"latent means: max |bf16 - fp32| = {float((z16 - z32).abs().max()):.4f} "
          f"({100 * float((z16 - z32).abs().max()) / latent_range:.2f}% of their range {latent_range:.2f}); "
          f"bf16 {s32 / s16:.2f}x the fp32 speed")


if __name__ == "__main__":
    main()
