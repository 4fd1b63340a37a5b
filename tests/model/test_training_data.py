"""Clip samplers and the bundled model's recipe."""

from __future__ import annotations

import pytest
import torch

from model import WFVAE
from model.training import FrameBankSampler, MixtureSampler, SyntheticMotionSampler, tiny_cpu_config

MAX_SHIPPED_BYTES = 10 * 1024 * 1024


def _bank() -> FrameBankSampler:
    video = torch.randint(0, 256, (20, 40, 60, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return FrameBankSampler([video])


@pytest.mark.parametrize("sampler", [_bank(), SyntheticMotionSampler(), MixtureSampler([_bank(), SyntheticMotionSampler()], [0.5, 0.5])])
def test_samplers_give_batches_in_range_determined_by_the_generator(sampler: object) -> None:
    a = sampler.sample(torch.Generator().manual_seed(3), 3, 5, 16, 24)  # type: ignore[attr-defined]
    b = sampler.sample(torch.Generator().manual_seed(3), 3, 5, 16, 24)  # type: ignore[attr-defined]
    c = sampler.sample(torch.Generator().manual_seed(4), 3, 5, 16, 24)  # type: ignore[attr-defined]
    assert a.shape == (3, 3, 5, 16, 24) and a.min() >= -1 and a.max() <= 1
    assert (a - b).abs().max() == 0 and (a - c).abs().max() > 0


def test_frame_bank_crops_are_pieces_of_the_video_at_scale_one() -> None:
    video = torch.randint(0, 256, (10, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    sampler = FrameBankSampler([video], strides=(1,), max_zoom_out=1.0)
    clip = sampler.sample(torch.Generator().manual_seed(0), 1, 5, 16, 16)[0]  # (3, 5, 16, 16)
    frames = ((clip + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0)  # (5, 16, 16, 3)
    starts = [s for s in range(6) if torch.equal(frames, video[s : s + 5]) or torch.equal(frames, video[s : s + 5].flip(2))]
    assert len(starts) == 1


def test_synthetic_clips_move() -> None:
    clip = SyntheticMotionSampler().sample(torch.Generator().manual_seed(1), 1, 5, 32, 32)[0]
    assert (clip[:, 0] - clip[:, 4]).abs().mean() > 0.01


def test_the_tiny_recipe_fits_the_shipping_budget() -> None:
    config = tiny_cpu_config()
    params = sum(p.numel() for p in WFVAE(config.model).state_dict().values())
    assert params * 4 <= MAX_SHIPPED_BYTES  # float32 safetensors
    assert config.model.base_channels <= 32 and config.model.latent_dim in (8, 16)
    assert config.loss.perceptual_weight == 0 and config.loss.kl_weight == 1e-6 and config.loss.wavelet_weight == 0.1
