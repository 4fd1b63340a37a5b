"""WF-VAE in PyTorch: weight-compatible with the official checkpoints, with exact Causal Cache streaming."""

from .checkpoint import default_model_dir, load_wfvae, read_state_dict, save_wfvae
from .config import WFVAEConfig, preset
from .distribution import DiagonalGaussian
from .errors import (
    CheckpointError,
    ConfigError,
    InputShapeError,
    SlowPrecisionError,
    StreamingUnsupportedError,
    VideoDecodeError,
    WFVAEError,
)
from .fast_path import FastPath
from .precision import DtypeChoice, choose_dtype, cpu_capability
from .streaming import DecodeStream, EncodeStream
from .wfvae import WFVAE, ForwardOutput

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DecodeStream",
    "DiagonalGaussian",
    "DtypeChoice",
    "EncodeStream",
    "FastPath",
    "ForwardOutput",
    "InputShapeError",
    "SlowPrecisionError",
    "StreamingUnsupportedError",
    "VideoDecodeError",
    "WFVAE",
    "WFVAEConfig",
    "WFVAEError",
    "choose_dtype",
    "cpu_capability",
    "default_model_dir",
    "load_wfvae",
    "preset",
    "read_state_dict",
    "save_wfvae",
]
