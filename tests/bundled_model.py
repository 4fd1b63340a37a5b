"""The bundled default model's config, read once for tests that check latent shapes and limits.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

from model import WFVAEConfig, default_model_dir
from model.checkpoint import CONFIG_NAME

__all__ = ["BATCH_TOLERANCE", "DEFAULT_CONFIG", "DEFAULT_MODEL_NAME", "LATENT_DIM"]

DEFAULT_MODEL_NAME = default_model_dir().name
DEFAULT_CONFIG = WFVAEConfig.from_file(default_model_dir() / CONFIG_NAME)
LATENT_DIM = DEFAULT_CONFIG.latent_dim  # channels of a mean or sampled latent; moments have twice
# Largest |difference| allowed between two encodings of one clip in different batches (batched
# convolutions round differently): up to 1.2e-5 measured on 9x64x64 clips, whose latents reach
# |z| ~ 5 with this model.
BATCH_TOLERANCE = 5e-5
