"""The training loop: resuming equals continuing, the official checkpoint layout, the GAN schedule."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from training_helpers import tiny_model_config

from model import load_wfvae
from model.training import (
    CHECKPOINT_NAME,
    MODEL_DIR_NAME,
    LossConfig,
    OptimConfig,
    SyntheticMotionSampler,
    TrainConfig,
    Trainer,
)


def _config(**overrides: object) -> TrainConfig:
    fields: dict[str, object] = {
        "model": tiny_model_config(),
        "loss": LossConfig(perceptual_weight=0.0, disc_start=2, disc_width=4, disc_layers=2),
        "optim": OptimConfig(lr=1e-3, schedule="cosine", warmup_steps=2),
        "max_steps": 6,
        "batch_size": 2,
        "num_frames": 5,
        "height": 16,
        "width": 16,
        "ema_decay": 0.9,
        "log_every": 1,
        "eval_every": 3,
        "checkpoint_every": 3,
    }
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]


def _val() -> torch.Tensor:
    return SyntheticMotionSampler().sample(torch.Generator().manual_seed(0), 1, 5, 16, 16)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst == 0.0, f"states differ by up to {worst}"


def test_resuming_from_a_checkpoint_equals_training_straight_through(tmp_path: Path) -> None:
    # Steps 0-1 train the autoencoder; from step 1 the GAN is on: 1 and 3 train the discriminator.
    config = _config(max_steps=4, checkpoint_every=2, eval_every=4,
                     loss=LossConfig(perceptual_weight=0.0, disc_start=1, disc_width=4, disc_layers=2))
    straight = Trainer(config, SyntheticMotionSampler())
    straight.run(checkpoint_root=tmp_path / "straight")

    first = Trainer(config, SyntheticMotionSampler())
    first.run(checkpoint_root=tmp_path / "split", until=2)
    resumed = Trainer(config, SyntheticMotionSampler())
    resumed.resume(tmp_path / "split" / "step-00000002")
    assert resumed.step == 2
    resumed.run(checkpoint_root=tmp_path / "split")

    _assert_same_state(straight.vae.state_dict(), resumed.vae.state_dict())
    assert straight.discriminator is not None and resumed.discriminator is not None
    _assert_same_state(straight.discriminator.state_dict(), resumed.discriminator.state_dict())
    assert straight.ema is not None and resumed.ema is not None
    _assert_same_state(straight.ema.state_dict(), resumed.ema.state_dict())


def test_checkpoint_has_the_official_layout_and_an_ema_model_for_load_wfvae(tmp_path: Path) -> None:
    trainer = Trainer(_config(max_steps=3), SyntheticMotionSampler())
    trainer.run(checkpoint_root=tmp_path)
    directory = tmp_path / "step-00000003"
    state = torch.load(directory / CHECKPOINT_NAME, weights_only=True)
    assert state["current_step"] == 3
    assert set(state["state_dict"]) == {"gen_model", "dics_model"}
    assert set(state["optimizer_state"]) == {"gen_optimizer", "disc_optimizer"}
    assert set(state["ema_state_dict"]) == set(trainer.vae.state_dict())
    # The official checkpoint file itself loads (load_wfvae takes its EMA weights) ...
    from_ckpt = load_wfvae(directory / CHECKPOINT_NAME, config=trainer.config.model)
    # ... and so does the Hugging Face directory beside it, holding the same EMA weights.
    from_dir = load_wfvae(directory / MODEL_DIR_NAME)
    assert trainer.ema is not None
    _assert_same_state(from_dir.state_dict(), trainer.ema.state_dict())
    _assert_same_state(from_ckpt.state_dict(), from_dir.state_dict())


def test_after_disc_start_odd_steps_train_the_discriminator_and_even_steps_the_autoencoder() -> None:
    trainer = Trainer(_config(max_steps=6), SyntheticMotionSampler())
    kinds = []
    for _ in range(6):
        terms = trainer.train_step()
        kinds.append("d" if "disc_loss" in terms else ("g+gan" if "g_loss" in terms else "g"))
    assert kinds == ["g", "g", "g+gan", "d", "g+gan", "d"]


def test_training_lowers_the_reconstruction_loss_and_reports_validation_psnr(tmp_path: Path) -> None:
    frozen = _val()

    class OneClip:
        def sample(self, generator: torch.Generator, batch_size: int, *size: int) -> torch.Tensor:
            return frozen.expand(batch_size, *frozen.shape[1:]).clone()

    trainer = Trainer(_config(max_steps=20, loss=LossConfig(perceptual_weight=0.0, use_gan=False),
                              optim=OptimConfig(lr=3e-3), eval_every=20, log_every=20, checkpoint_every=20),
                      OneClip(), val_batch=frozen)
    reports: list[tuple[int, dict[str, float], Path | None]] = []
    first = trainer.train_step()["rec_loss"]
    metrics = trainer.run(reporter=lambda *r: reports.append(r), checkpoint_root=tmp_path)
    assert metrics["rec_loss"] < 0.7 * first
    assert [r[0] for r in reports] == [20] and reports[0][2] == tmp_path / "step-00000020"
    assert metrics["val_psnr"] > 10 and "val_psnr_ema" in metrics


def test_learning_rate_warms_up_then_follows_the_cosine_to_its_floor() -> None:
    trainer = Trainer(_config(max_steps=12, optim=OptimConfig(lr=1.0, schedule="cosine", warmup_steps=2,
                                                                min_lr_ratio=0.1)), SyntheticMotionSampler())
    assert trainer.lr_at(0) == pytest.approx(0.5) and trainer.lr_at(1) == pytest.approx(1.0)
    assert trainer.lr_at(2) == pytest.approx(1.0)
    assert trainer.lr_at(7) == pytest.approx(0.1 + 0.9 * 0.5)
    assert trainer.lr_at(12) == pytest.approx(0.1)

