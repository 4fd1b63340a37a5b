"""LPIPS on the hand-written VGG16, with random weights (no pretrained weights are downloadable here)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from training_helpers import tiny_model_config

from model.training import (
    LPIPS,
    LossConfig,
    PerceptualWeightsMissing,
    SyntheticMotionSampler,
    TrainConfig,
    Trainer,
)
from model.training.lpips import VGG_TAPS, VGG16Features


def _images(seed: int) -> torch.Tensor:
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_vgg16_layout_matches_torchvision_key_names_and_taps() -> None:
    keys = set(VGG16Features().state_dict())
    assert {"features.0.weight", "features.28.bias"} <= keys and len(keys) == 26  # 13 convolutions
    assert len(VGG_TAPS) == 5


def test_distance_is_zero_for_identical_frames_and_positive_otherwise() -> None:
    torch.manual_seed(0)
    lpips = LPIPS().eval()
    for head in (lpips.lin0, lpips.lin1, lpips.lin2, lpips.lin3, lpips.lin4):
        head.model[1].weight.data.abs_()  # LPIPS heads are non-negative after training
    x, y = _images(0), _images(1)
    same, different = lpips(x, x), lpips(x, y)
    assert same.shape == (2, 1, 1, 1) and same.abs().max() < 1e-6
    assert (different > 0).all()


def test_weights_load_from_torchvision_and_lpips_package_files(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = LPIPS()
    vgg = {k.removeprefix("net."): v for k, v in source.state_dict().items() if k.startswith("net.")}
    heads = {k: v for k, v in source.state_dict().items() if k.startswith("lin")}
    torch.save(vgg, tmp_path / "vgg16-397923af.pth")  # torchvision's file name and keys
    torch.save(heads, tmp_path / "vgg.pth")  # the lpips package's heads
    loaded = LPIPS.from_weights(tmp_path)
    x, y = _images(0), _images(1)
    assert (loaded(x, y) - source.eval()(x, y)).abs().max() < 1e-6


def test_missing_weights_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(PerceptualWeightsMissing, match="no LPIPS weights"):
        LPIPS.from_weights(None)
    with pytest.raises(PerceptualWeightsMissing, match="holds no"):
        LPIPS.from_weights(tmp_path)


def test_trainer_without_weights_turns_the_perceptual_term_off_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    config = TrainConfig(model=tiny_model_config(), loss=LossConfig(perceptual_weight=1.0, use_gan=False),
                         max_steps=1, batch_size=1, num_frames=5, height=16, width=16, ema_decay=None)
    with caplog.at_level(logging.WARNING, logger="model.training.loop"):
        trainer = Trainer(config, SyntheticMotionSampler())
    assert trainer.perceptual is None
    assert "perceptual (LPIPS) loss is OFF" in caplog.text


def test_trainer_uses_a_given_perceptual_network() -> None:
    config = TrainConfig(model=tiny_model_config(), loss=LossConfig(perceptual_weight=1.0, use_gan=False),
                         max_steps=1, batch_size=1, num_frames=5, height=32, width=32, ema_decay=None)
    trainer = Trainer(config, SyntheticMotionSampler(), perceptual=LPIPS())
    terms = trainer.train_step()
    assert trainer.perceptual is not None and terms["rec_loss"] > 0
