"""The bundled default model is the trained one, within budget, and reconstructs footage it never saw.

bigbuckbunny was held out of training (bikes, carphone and synthetic motion only). Floors sit
below the figures measured at release (docs/default-model.md) by a margin
for the float differences of other CPUs.
"""

from __future__ import annotations

from pathlib import Path

import torch

from model import default_model_dir, load_wfvae
from model.metrics import psnr, ssim

TRAINED_MODEL_NAME = "wfvae-tiny-16chn"
MAX_SHIPPED_BYTES = 10 * 1024 * 1024
# Measured on this clip (17 frames, 144x256): see benchmarks/README.md.
PSNR_FLOOR_DB = 24.7  # measured 25.19 dB
SSIM_FLOOR = 0.63  # measured 0.649
# A random-weight model scores about 10 dB; the floor must be far from that.
RANDOM_MODEL_PSNR_DB = 12.0


def _held_out_clip(sample_videos: dict[str, Path]) -> torch.Tensor:
    from model.media import ClipSettings, sample_clips, to_model_input

    settings = ClipSettings(num_frames=17, height=144, width=256, resize_mode="crop", start_frame=40)
    clip = sample_clips(sample_videos["bigbuckbunny"].read_bytes(), settings)[0]
    return to_model_input(clip.frames)  # (1, 3, 17, 144, 256)


def test_the_default_model_is_the_trained_one_within_the_size_budget() -> None:
    directory = default_model_dir()
    assert directory.name == TRAINED_MODEL_NAME
    weights = directory / "diffusion_pytorch_model.safetensors"
    assert weights.stat().st_size <= MAX_SHIPPED_BYTES
    config = load_wfvae(directory).config
    assert config.base_channels <= 32 and config.latent_dim in (8, 16) and config.norm_type == "layernorm"


def test_default_model_reconstructs_held_out_footage_above_the_floor(sample_videos: dict[str, Path]) -> None:
    torch.set_num_threads(2)
    x = _held_out_clip(sample_videos)
    vae = load_wfvae(default_model_dir())
    with torch.no_grad():
        y = vae.decode(vae.encode(x).mode()).clamp(-1, 1)
    assert y.shape == x.shape
    score, structure = psnr(y, x).item(), ssim(y, x).item()
    assert score >= max(PSNR_FLOOR_DB, RANDOM_MODEL_PSNR_DB), f"PSNR {score:.2f} dB below the floor"
    assert structure >= SSIM_FLOOR, f"SSIM {structure:.4f} below the floor"
