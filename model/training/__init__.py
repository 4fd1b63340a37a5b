"""Training WF-VAE: the paper's losses, discriminator, EMA, LPIPS, samplers and the loop (no Ray here)."""

from .config import STAGES, LossConfig, OptimConfig, TrainConfig, stage_config, tiny_cpu_config
from .data import ClipSampler, FrameBankSampler, MixtureSampler, SyntheticMotionSampler
from .discriminator import PatchDiscriminator3D
from .ema import EMA
from .loop import CHECKPOINT_NAME, MODEL_DIR_NAME, Trainer
from .lpips import LPIPS, PerceptualWeightsMissing

__all__ = [
    "CHECKPOINT_NAME",
    "ClipSampler",
    "EMA",
    "FrameBankSampler",
    "LPIPS",
    "LossConfig",
    "MODEL_DIR_NAME",
    "MixtureSampler",
    "OptimConfig",
    "PatchDiscriminator3D",
    "PerceptualWeightsMissing",
    "STAGES",
    "SyntheticMotionSampler",
    "TrainConfig",
    "Trainer",
    "stage_config",
    "tiny_cpu_config",
]
