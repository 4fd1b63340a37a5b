"""Which model made a latent: the model's id (name and weights hash), its config hash, and the
metadata written beside every latent; read from the model's files, without building it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..checkpoint import check_checkpoint, default_model_dir
from ..config import WFVAEConfig
from ..precision import DtypeChoice

__all__ = ["ModelCard", "config_hash", "latent_metadata", "model_identity", "resolve_source"]

HASH_CHUNK = 2**20
WEIGHT_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".bin")
CONFIG_HASH_CHARS = 16
MODEL_HASH_CHARS = 12


def resolve_source(source: str | Path | None) -> str:
    """The model source, the bundled model when none is given."""
    return str(default_model_dir()) if source is None else str(source)


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def model_identity(source: str | Path | None) -> str:
    """`name-<sha256 of the weights>[:12]` for local models, the hub id itself otherwise."""
    path = Path(resolve_source(source))
    if path.is_dir():
        weights = sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES)
        if weights:
            digest = hashlib.sha256("".join(_file_digest(w) for w in weights).encode()).hexdigest()
            return f"{path.name}-{digest[:MODEL_HASH_CHARS]}"
        return path.name
    if path.is_file():
        return f"{path.stem}-{_file_digest(path)[:MODEL_HASH_CHARS]}"
    return str(source)


def config_hash(config: WFVAEConfig) -> str:
    """A short hash of every field of the model's config."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:CONFIG_HASH_CHARS]


def latent_metadata(
    config: WFVAEConfig, model_id: str, latent_kind: str, precision: DtypeChoice
) -> dict[str, object]:
    """What a reader needs to know about latents of this model (Parquet key-value metadata, the
    service's answers): the model, the latent's kind and channels, scale/shift, the encode dtype."""
    return {
        "model_id": model_id,
        "config_hash": config_hash(config),
        "latent_kind": latent_kind,
        "latent_dim": int(config.latent_dim),
        "scale": list(np.atleast_1d(np.asarray(config.scale, dtype=float)).tolist()),
        "shift": list(np.atleast_1d(np.asarray(config.shift, dtype=float)).tolist()),
        "encode_dtype": precision.name,
        "encode_dtype_reason": precision.reason,
    }


@dataclass(frozen=True)
class ModelCard:
    """A model as its latents name it: where it is, its id and its config."""

    source: str
    model_id: str
    config: WFVAEConfig

    @classmethod
    def read(cls, source: str | Path | None, model_id: str | None = None) -> ModelCard:
        """The model at `source` (None: the bundled one), read from its files without building it;
        its weights' names and shapes are checked as loading checks them, so a bad model fails here."""
        path = resolve_source(source)
        config = check_checkpoint(path)
        return cls(path, model_id or model_identity(path), config)

    def metadata(self, latent_kind: str, precision: DtypeChoice) -> dict[str, object]:
        """`latent_metadata` of this model's latents of `latent_kind`, encoded in `precision`."""
        return latent_metadata(self.config, self.model_id, latent_kind, precision)
