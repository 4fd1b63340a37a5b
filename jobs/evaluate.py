"""Evaluating a WF-VAE on a set of videos: PSNR, SSIM (LPIPS, FVD where their weights are given),
whole-clip against block-wise inference in the form of the paper's Table 5, a JSON report, and
per video a PNG grid (original, reconstruction, error) and a per-frame PSNR plot.

    python -m jobs.evaluate --videos a.mp4 b.mp4 --out eval/ [--model DIR] [--num-frames 33]
        [--height 256 --width 256] [--chunk-frames 8] [--lpips-weights DIR] [--i3d-weights i3d_torchscript.pt]

Block-wise inference runs the encoder over `chunk_frames` frames at a time and the decoder over
`chunk_frames / 4` latents at a time, carrying the Causal Cache between blocks; the paper's
Table 5 reports the PSNR drop this causes (WF-VAE: 0.00).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from model import WFVAE, default_model_dir, load_wfvae
from model.config import TEMPORAL_COMPRESSION
from model.metrics import psnr_per_frame, ssim_per_frame
from model.training.lpips import LPIPS, PerceptualWeightsMissing

__all__ = ["EvalSettings", "evaluate", "frechet_distance", "load_clips", "main", "reconstruct", "render_grid", "render_psnr_plot", "table5"]

log = logging.getLogger(__name__)

FVD_RESOLUTION = 224
GRID_FRAMES = 4


class EvalSettings(BaseModel):
    """What to evaluate and how; built by the command line or by callers."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(default_factory=lambda: str(default_model_dir()))
    videos: list[str] = Field(min_length=1)
    out: str
    num_frames: int = Field(33, ge=1)
    height: int = Field(256, gt=0)
    width: int = Field(256, gt=0)
    resize_mode: str = "crop"
    clips_per_video: int = Field(1, ge=1, description="clips spread evenly over each video")
    chunk_frames: int = Field(8, ge=TEMPORAL_COMPRESSION, description="block size, a multiple of 4")
    lpips_weights: str | None = None
    i3d_weights: str | None = Field(None, description="StyleGAN-V's i3d_torchscript.pt, for FVD")
    endpoint_url: str | None = None
    pictures: bool = True


# -- per-video work -----------------------------------------------------------------------------
def load_clips(uri: str, settings: EvalSettings) -> list[Tensor]:
    """Clips spread evenly over a video, through the pipeline's decoder: each (1, 3, T, H, W) in [-1, 1]."""
    from model.media import ClipSettings, sample_clips, to_model_input
    from model.storage import StorageSettings, read_bytes

    clip_settings = ClipSettings(num_frames=settings.num_frames, height=settings.height, width=settings.width,
                                 resize_mode=settings.resize_mode,  # type: ignore[arg-type]
                                 clip_mode="uniform", num_clips=settings.clips_per_video)
    video = read_bytes(uri, StorageSettings(endpoint_url=settings.endpoint_url))
    return [to_model_input(clip.frames) for clip in sample_clips(video, clip_settings)]


@torch.no_grad()
def reconstruct(vae: WFVAE, x: Tensor, chunk_frames: int | None) -> Tensor:
    """decode(encode(x)) with the posterior mode; block-wise when `chunk_frames` is given."""
    if chunk_frames is None:
        return vae.decode(vae.encode(x).mode()).clamp(-1, 1)
    z = vae.encode(x, chunk_frames=chunk_frames).mode()
    return vae.decode(z, chunk_latents=max(1, chunk_frames // TEMPORAL_COMPRESSION)).clamp(-1, 1)


def _scores(x: Tensor, y: Tensor, lpips: LPIPS | None) -> dict[str, Any]:
    per_frame = psnr_per_frame(y, x)[0]  # (T,)
    result: dict[str, Any] = {
        "psnr": float(per_frame.mean()),
        "ssim": float(ssim_per_frame(y, x)[0].mean()),
        "psnr_per_frame": [round(float(v), 4) for v in per_frame],
    }
    if lpips is not None:
        frames_x = x[0].transpose(0, 1)  # (T, 3, H, W)
        frames_y = y[0].transpose(0, 1)
        result["lpips"] = float(lpips(frames_x, frames_y).mean())
    return result


# -- FVD ----------------------------------------------------------------------------------------
def _fvd_features(detector: torch.jit.ScriptModule, videos: list[Tensor]) -> np.ndarray:
    """StyleGAN-V's protocol: short side to 224, centre crop, [-1, 1], raw I3D features."""
    feats = []
    for video in videos:  # (1, 3, T, H, W) in [-1, 1]
        v = (video[0] + 1) / 2  # (3, T, H, W) in [0, 1]
        _, t, h, w = v.shape
        scale = FVD_RESOLUTION / min(h, w)
        size = (math.ceil(h * scale), math.ceil(w * scale))
        v = F.interpolate(v, size=size, mode="bilinear", align_corners=False)  # over (T, H, W) as batch x chan
        top, left = (v.shape[-2] - FVD_RESOLUTION) // 2, (v.shape[-1] - FVD_RESOLUTION) // 2
        v = v[..., top : top + FVD_RESOLUTION, left : left + FVD_RESOLUTION]
        v = (v - 0.5) * 2
        with torch.no_grad():
            feats.append(detector(v.unsqueeze(0), rescale=False, resize=False, return_features=True).cpu().numpy())
    return np.concatenate(feats).astype(np.float64)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets (N, D): |mu_a - mu_b|^2 + Tr(...)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a = np.cov(a, rowvar=False) if len(a) > 1 else np.zeros((a.shape[1], a.shape[1]))
    cov_b = np.cov(b, rowvar=False) if len(b) > 1 else np.zeros((b.shape[1], b.shape[1]))
    # Tr sqrt(cov_a cov_b) from the eigenvalues of sqrt(cov_a) cov_b sqrt(cov_a), symmetric PSD.
    vals, vecs = np.linalg.eigh(cov_a)
    root_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(inner, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


# -- pictures -----------------------------------------------------------------------------------
def _to_uint8(frame: Tensor) -> np.ndarray:
    """(3, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    return ((frame.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()


def _heat(error: Tensor) -> np.ndarray:
    """(H, W) absolute error in [0, 2] -> a black-red-yellow-white map, scaled so 0.25 saturates."""
    e = (error / 0.25).clamp(0, 1).numpy()
    rgb = np.stack([np.clip(3 * e, 0, 1), np.clip(3 * e - 1, 0, 1), np.clip(3 * e - 2, 0, 1)], axis=-1)
    return (rgb * 255).round().astype(np.uint8)


def render_grid(x: Tensor, y: Tensor, path: Path, frames: int = GRID_FRAMES) -> Path:
    """A PNG: rows original / reconstruction / |error| heat map, columns evenly spaced frames."""
    from PIL import Image

    t = x.shape[2]
    picks = sorted({round(i * (t - 1) / max(1, frames - 1)) for i in range(frames)})
    rows = []
    for row in ("original", "reconstruction", "error"):
        tiles = []
        for i in picks:
            if row == "original":
                tiles.append(_to_uint8(x[0, :, i]))
            elif row == "reconstruction":
                tiles.append(_to_uint8(y[0, :, i]))
            else:
                tiles.append(_heat((x[0, :, i] - y[0, :, i]).abs().mean(0)))
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)
    return path


def render_psnr_plot(whole: list[float], blockwise: list[float], path: Path, title: str) -> Path:
    """A PNG line plot of PSNR per frame, whole-clip (solid) against block-wise (dashed)."""
    from PIL import Image, ImageDraw

    width, height, left, right, top, bottom = 640, 360, 60, 20, 40, 50
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    values = whole + blockwise
    low, high = math.floor(min(values)) - 1, math.ceil(max(values)) + 1
    n = len(whole)

    def point(i: int, v: float) -> tuple[float, float]:
        px = left + (width - left - right) * (i / max(1, n - 1))
        py = top + (height - top - bottom) * (1 - (v - low) / (high - low))
        return px, py

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for k in range(5):  # y ticks
        v = low + (high - low) * k / 4
        _, py = point(0, v)
        draw.line([left - 4, py, left, py], fill="black")
        draw.text((5, py - 6), f"{v:.1f}", fill="black")
    for i in range(0, n, max(1, n // 8)):  # x ticks
        px, _ = point(i, low)
        draw.line([px, height - bottom, px, height - bottom + 4], fill="black")
        draw.text((px - 4, height - bottom + 6), str(i), fill="black")
    draw.line([point(i, v) for i, v in enumerate(whole)], fill=(31, 119, 180), width=3)
    for i in range(n - 1):  # dashed: every other segment
        if i % 2 == 0:
            draw.line([point(i, blockwise[i]), point(i + 1, blockwise[i + 1])], fill=(255, 127, 14), width=2)
    draw.text((left, 10), title, fill="black")
    draw.text((width // 2 - 30, height - 20), "frame", fill="black")
    draw.text((5, top - 20), "PSNR (dB)", fill="black")
    draw.line([width - 220, 15, width - 190, 15], fill=(31, 119, 180), width=3)
    draw.text((width - 185, 9), "whole clip", fill="black")
    draw.line([width - 110, 15, width - 95, 15], fill=(255, 127, 14), width=2)
    draw.text((width - 90, 9), "block-wise", fill="black")
    image.save(path)
    return path


# -- the run ------------------------------------------------------------------------------------
def evaluate(settings: EvalSettings) -> dict[str, Any]:
    """Evaluates every video; writes `results.json` and pictures under `settings.out`; returns the report."""
    out = Path(settings.out)
    out.mkdir(parents=True, exist_ok=True)
    vae = load_wfvae(settings.model)
    lpips = _optional_lpips(settings.lpips_weights)
    rows: list[dict[str, Any]] = []
    originals: list[Tensor] = []
    whole_recs: list[Tensor] = []
    block_recs: list[Tensor] = []
    for uri in settings.videos:
        name = Path(uri.rstrip("/")).stem
        clips = load_clips(uri, settings)
        # Clips of one video are scored as one long sequence of frames (metrics are per frame).
        x = torch.cat(clips, dim=2)  # (1, 3, n*T, H, W)
        whole = torch.cat([reconstruct(vae, c, None) for c in clips], dim=2)
        block = torch.cat([reconstruct(vae, c, settings.chunk_frames) for c in clips], dim=2)
        row: dict[str, Any] = {
            "video": uri,
            "name": name,
            "clips": len(clips),
            "frames": int(x.shape[2]),
            "whole_clip": _scores(x, whole, lpips),
            "block_wise": _scores(x, block, lpips),
            "max_abs_difference_whole_vs_block": float((whole - block).abs().max()),
        }
        row["psnr_drop"] = row["whole_clip"]["psnr"] - row["block_wise"]["psnr"]
        if settings.pictures:
            first = slice(0, clips[0].shape[2])
            row["grid_png"] = str(render_grid(x[:, :, first], whole[:, :, first], out / f"{name}_grid.png"))
            row["psnr_plot_png"] = str(render_psnr_plot(
                row["whole_clip"]["psnr_per_frame"], row["block_wise"]["psnr_per_frame"],
                out / f"{name}_psnr.png", f"{name}: PSNR per frame"))
        log.info("%s: PSNR %.2f whole / %.2f block-wise, SSIM %.4f", name, row["whole_clip"]["psnr"],
                 row["block_wise"]["psnr"], row["whole_clip"]["ssim"])
        rows.append(row)
        frames = clips[0].shape[2]  # FVD compares clips, not whole videos
        originals.extend(clips)
        whole_recs.extend(whole.split(frames, dim=2))
        block_recs.extend(block.split(frames, dim=2))
    summary = {mode: _mean_scores([r[mode] for r in rows]) for mode in ("whole_clip", "block_wise")}
    if settings.i3d_weights:
        detector = torch.jit.load(settings.i3d_weights, map_location="cpu").eval()
        real = _fvd_features(detector, originals)
        summary["whole_clip"]["fvd"] = frechet_distance(real, _fvd_features(detector, whole_recs))
        summary["block_wise"]["fvd"] = frechet_distance(real, _fvd_features(detector, block_recs))
    summary["psnr_drop"] = summary["whole_clip"]["psnr"] - summary["block_wise"]["psnr"]
    report = {
        "model": settings.model,
        "latent_channels": vae.config.latent_dim,
        "settings": settings.model_dump(mode="json"),
        "videos": rows,
        "summary": summary,
        "table": table5(settings.model, vae.config.latent_dim, summary),
    }
    (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "table.md").write_text(report["table"] + "\n")
    return report


def _mean_scores(scores: list[dict[str, Any]]) -> dict[str, Any]:
    keys = [k for k in ("psnr", "ssim", "lpips") if all(k in s for s in scores)]
    return {k: float(np.mean([s[k] for s in scores])) for k in keys}


def table5(model: str, channels: int, summary: dict[str, Any]) -> str:
    """The paper's Table 5 layout: one row without and one with block-wise inference (BWI)."""
    lines = ["| Model | Chn | BWI | PSNR | SSIM | LPIPS | FVD |", "|---|---|---|---|---|---|---|"]
    name = Path(model).name or model
    for mode, mark in (("whole_clip", "✗"), ("block_wise", "✓")):
        s = summary[mode]
        lpips = f"{s['lpips']:.4f}" if "lpips" in s else "–"
        fvd = f"{s['fvd']:.2f}" if "fvd" in s else "–"
        lines.append(f"| {name} | {channels} | {mark} | {s['psnr']:.2f} | {s['ssim']:.4f} | {lpips} | {fvd} |")
    # Rounded before printing so a difference of float noise reads 0.00, not -0.00.
    psnr_drop = round(summary["psnr_drop"], 2) + 0.0
    ssim_drop = round(summary["whole_clip"]["ssim"] - summary["block_wise"]["ssim"], 4) + 0.0
    lines.append(f"| drop | | | {psnr_drop:.2f} | {ssim_drop:.4f} | | |")
    return "\n".join(lines)


def _optional_lpips(weights: str | None) -> LPIPS | None:
    if weights is None:
        log.info("LPIPS not computed: no --lpips-weights given")
        return None
    try:
        return LPIPS.from_weights(weights)
    except PerceptualWeightsMissing as err:
        log.warning("LPIPS not computed: %s", err)
        return None


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m jobs.evaluate", description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", nargs="+", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--model", default=str(default_model_dir()))
    p.add_argument("--num-frames", type=int, default=33)
    p.add_argument("--height", type=int, default=256)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--resize-mode", choices=["crop", "stretch"], default="crop")
    p.add_argument("--clips-per-video", type=int, default=1)
    p.add_argument("--chunk-frames", type=int, default=8)
    p.add_argument("--lpips-weights")
    p.add_argument("--i3d-weights")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-pictures", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = evaluate(EvalSettings(
        model=args.model, videos=args.videos, out=args.out, num_frames=args.num_frames, height=args.height,
        width=args.width, resize_mode=args.resize_mode, chunk_frames=args.chunk_frames,
        clips_per_video=args.clips_per_video,
        lpips_weights=args.lpips_weights, i3d_weights=args.i3d_weights, pictures=not args.no_pictures,
    ))
    print(report["table"])
    print(f"results: {Path(args.out) / 'results.json'}")


if __name__ == "__main__":
    main()
