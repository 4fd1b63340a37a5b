"""Training configuration: losses, optimiser, schedule, and the paper's three stages (Table 7)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..config import WFVAEConfig, preset

__all__ = ["LossConfig", "OptimConfig", "TrainConfig", "STAGES", "stage_config", "tiny_cpu_config"]


class LossConfig(BaseModel):
    """Weights of the objective; defaults are the official recipe's (`train_ddp.py`, `train_ddp.sh`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pixel_loss: Literal["l1", "l2"] = "l1"
    perceptual_weight: float = Field(1.0, ge=0.0)
    kl_weight: float = Field(1e-6, ge=0.0)
    wavelet_weight: float = Field(0.1, ge=0.0)  # lambda_WL
    use_gan: bool = True
    disc_start: int = Field(0, ge=0, description="step from which the GAN terms are on")
    disc_weight: float = Field(0.5, ge=0.0, description="scale of the adaptive GAN weight")
    disc_factor: float = Field(1.0, ge=0.0)
    disc_loss: Literal["hinge", "vanilla"] = "hinge"
    disc_layers: int = Field(3, ge=1)
    disc_width: int = Field(64, ge=1)

    def gan_active(self, step: int) -> bool:
        return self.use_gan and step >= self.disc_start


class OptimConfig(BaseModel):
    """AdamW for both networks, as the official trainer; schedule extras for training from scratch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    lr: float = Field(1e-5, gt=0.0)
    disc_lr: float | None = Field(None, gt=0.0, description="defaults to lr")
    weight_decay: float = Field(1e-4, ge=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    clip_grad_norm: float = Field(1e5, gt=0.0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="cosine floor as a fraction of lr")


class TrainConfig(BaseModel):
    """Everything one training run needs apart from its data and output location."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: WFVAEConfig = Field(default_factory=lambda: preset("L", 16))
    init_from: str | None = Field(None, description="weights to start from (load_wfvae source)")
    loss: LossConfig = LossConfig()
    optim: OptimConfig = OptimConfig()
    max_steps: int = Field(1000, ge=1)
    batch_size: int = Field(8, ge=1, description="clips per step, over all workers")
    num_frames: int = Field(25, ge=1)
    height: int = Field(256, gt=0)
    width: int = Field(256, gt=0)
    ema_decay: float | None = Field(0.999, ge=0.0, lt=1.0, description="None switches EMA off")
    seed: int = 1234
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    lpips_weights: str | None = Field(None, description="local path to LPIPS VGG16 + linear weights")

    @model_validator(mode="after")
    def _check_geometry(self) -> TrainConfig:
        if (self.num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 1 + 4k, got {self.num_frames}")
        if self.height % 8 or self.width % 8:
            raise ValueError(f"height and width must be multiples of 8, got {self.height}x{self.width}")
        return self


# The paper's Table 7: stage I at 25 frames, stage II at 49 frames, stage III with LPIPS at 0.1;
# lr 1e-5 and batch 8 throughout, at 256x256.
STAGES: dict[str, dict[str, object]] = {
    "stage1": {"num_frames": 25, "loss": {"perceptual_weight": 1.0}},
    "stage2": {"num_frames": 49, "loss": {"perceptual_weight": 1.0}},
    "stage3": {"num_frames": 49, "loss": {"perceptual_weight": 0.1}},
}


def stage_config(stage: Literal["stage1", "stage2", "stage3"], **overrides: object) -> TrainConfig:
    """A ready config for a stage of the paper's recipe; `overrides` replace top-level fields."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
    spec = STAGES[stage]
    fields: dict[str, object] = {
        "batch_size": 8,
        "height": 256,
        "width": 256,
        "num_frames": spec["num_frames"],
        "optim": OptimConfig(lr=1e-5),
        "loss": LossConfig(**spec["loss"]),  # type: ignore[arg-type]
        "ema_decay": 0.999,
    }
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]


def tiny_cpu_config(**overrides: object) -> TrainConfig:
    """The recipe of the bundled default model (`model/assets/wfvae-tiny-16chn`), trained from
    scratch on a shared 2-core CPU (82 min, then a 23-min continuation).

    Base width 16, 16 latent channels, L1 + KL + WL (no LPIPS: no VGG weights here; no GAN:
    too few steps for it to help), lr 1e-3 with warmup and cosine decay, EMA 0.99 (0.999
    averages over more steps than the run has). 9-frame 64x64 crops, 2 clips a step (the
    shipped run used 4 for its first 350 steps, then 2 to take more steps on a loaded CPU,
    1,800 steps in all). The shipped weights then continued from step 1,800 for 1,500 more
    steps (to 3,300): 3 clips a step, lr 4e-4 cosine with 100 warm-up steps over the 3,300
    steps (1.9e-4 at the resume, 2e-5 at the end), EMA 0.99, 1 thread, 23 min; held-out
    bigbuckbunny 24.89 -> 25.37 dB (docs/default-model.md).
    """
    model = WFVAEConfig(
        latent_dim=16,
        base_channels=16,
        encoder_energy_flow_hidden_size=16,
        decoder_energy_flow_hidden_size=16,
        norm_type="layernorm",
        t_interpolation="trilinear",
    )
    fields: dict[str, object] = {
        "model": model,
        "loss": LossConfig(perceptual_weight=0.0, use_gan=False),
        "optim": OptimConfig(lr=1e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=100, min_lr_ratio=0.05),
        "max_steps": 1500,
        "batch_size": 2,
        "num_frames": 9,
        "height": 64,
        "width": 64,
        "ema_decay": 0.99,
        "log_every": 10,
        "eval_every": 50,
        "checkpoint_every": 50,
    }
    fields.update(overrides)
    return TrainConfig(**fields)  # type: ignore[arg-type]
