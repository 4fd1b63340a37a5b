"""Command line for people: `python -m model encode VIDEO LATENT` and `python -m model decode LATENT VIDEO`."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import default_model_dir, load_wfvae
from .errors import InputShapeError, WFVAEError
from .media import ClipSettings, encode_mp4, sample_clips, to_model_input, to_uint8_frames
from .precision import DtypeChoice, choose_dtype

__all__ = ["main"]

LATENT_KEY = "latent"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}  # names --dtype takes


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"size must look like 256x256, got {text!r}") from err
    if h <= 0 or w <= 0 or h % 8 or w % 8:
        raise argparse.ArgumentTypeError(f"height and width must be positive multiples of 8, got {text}")
    return h, w


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m model", description=__doc__)
    parser.add_argument("--weights", default=str(default_model_dir()),
                        help="model directory, .safetensors, .ckpt or hub id (default: the bundled small model)")
    parser.add_argument("--dtype", choices=["auto", *sorted(DTYPES)], default="auto",
                        help="auto: bf16 on GPUs and on CPUs with AMX-BF16, else fp32 (default)")
    parser.add_argument("--force-dtype", action="store_true",
                        help="run bf16/fp16 even on a CPU without fast kernels for it (else refused)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    sub = parser.add_subparsers(dest="command", required=True)

    enc = sub.add_parser("encode", help="video file -> latent safetensors")
    enc.add_argument("video", type=Path)
    enc.add_argument("latent", type=Path)
    enc.add_argument("--frames", type=int, default=17, help="clip length, 1 + 4k (default 17)")
    enc.add_argument("--stride", type=int, default=1, help="take every n-th frame")
    enc.add_argument("--start", type=int, default=0, help="first frame index")
    enc.add_argument("--size", type=_size, default=(256, 256), help="HxW, multiples of 8 (default 256x256)")
    enc.add_argument("--chunk-frames", type=int, default=None, help="stream through Causal Cache in chunks")
    enc.add_argument("--sample", action="store_true", help="store a posterior sample instead of the mean")

    dec = sub.add_parser("decode", help="latent safetensors -> MP4 video")
    dec.add_argument("latent", type=Path)
    dec.add_argument("video", type=Path)
    dec.add_argument("--fps", type=float, default=None, help="default: the fps stored with the latent, else 24")
    dec.add_argument("--chunk-latents", type=int, default=None, help="stream through Causal Cache in chunks")
    return parser


def _encode(args: argparse.Namespace, precision: DtypeChoice) -> str:
    if args.frames < 1 or (args.frames - 1) % 4:
        raise InputShapeError(f"--frames must be 1 + 4k (1, 5, 9, 17, 33, ...), got {args.frames}")
    try:
        settings = ClipSettings(num_frames=args.frames, frame_stride=args.stride, start_frame=args.start,
                                height=args.size[0], width=args.size[1])
    except ValueError as err:  # pydantic's ValidationError: sizes not multiples of 8, stride < 1
        raise InputShapeError(str(err)) from err
    (clip,) = sample_clips(args.video, settings)  # the pipeline's and the service's clip path
    video, fps = to_model_input(clip.frames), clip.fps  # (1, 3, T, H, W) in [-1, 1]
    vae = load_wfvae(args.weights, dtype=precision.dtype, device=args.device, force_dtype=args.force_dtype)
    started = time.perf_counter()
    with torch.inference_mode():
        posterior = vae.encode(video, chunk_frames=args.chunk_frames)
        latent = posterior.sample() if args.sample else posterior.mean
    elapsed = time.perf_counter() - started
    metadata = {
        "source": str(args.video),
        "fps": str(fps),
        "frames": str(args.frames),
        "stride": str(args.stride),
        "start": str(args.start),
        "size": f"{args.size[0]}x{args.size[1]}",
        "latent": "sample" if args.sample else "mean",
        "dtype": precision.name,
        "dtype_reason": precision.reason,
        "config": vae.config.to_json(),
    }
    args.latent.parent.mkdir(parents=True, exist_ok=True)
    save_file({LATENT_KEY: latent.float().contiguous().cpu()}, str(args.latent), metadata=metadata)
    return f"encoded {args.video} {tuple(video.shape)} -> {args.latent} {tuple(latent.shape)} in {elapsed:.2f}s"


def _decode(args: argparse.Namespace, precision: DtypeChoice) -> str:
    try:
        with safe_open(str(args.latent), framework="pt") as handle:
            if LATENT_KEY not in handle.keys():
                raise InputShapeError(f"{args.latent} holds no tensor named {LATENT_KEY!r} (has {list(handle.keys())})")
            latent = handle.get_tensor(LATENT_KEY)
            metadata = handle.metadata() or {}
    except (OSError, Exception) as err:
        if isinstance(err, WFVAEError):
            raise
        raise InputShapeError(f"cannot read latent file {args.latent}: {err}") from err
    vae = load_wfvae(args.weights, dtype=precision.dtype, device=args.device, force_dtype=args.force_dtype)
    started = time.perf_counter()
    with torch.inference_mode():
        video = vae.decode(latent, chunk_latents=args.chunk_latents)
    elapsed = time.perf_counter() - started
    fps = args.fps or float(metadata.get("fps", 24.0))
    args.video.parent.mkdir(parents=True, exist_ok=True)
    args.video.write_bytes(encode_mp4(to_uint8_frames(video)[0].numpy(), fps))
    return f"decoded {args.latent} {tuple(latent.shape)} -> {args.video} {tuple(video.shape)} in {elapsed:.2f}s"


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    try:
        precision = choose_dtype(args.dtype, args.device, force=args.force_dtype)  # before any input is read
        message = (_encode if args.command == "encode" else _decode)(args, precision)
    except WFVAEError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
