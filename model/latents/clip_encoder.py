"""ClipEncoder: the model loaded once, mapping same-shape clip batches to latents, as both doors (the pipeline's actors, the service's replicas) run it."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from ..checkpoint import load_wfvae
from ..config import WFVAEConfig
from ..media import to_model_input
from ..precision import DtypeChoice, choose_dtype
from .identity import config_hash, latent_metadata, model_identity, resolve_source

log = logging.getLogger(__name__)

__all__ = ["ClipEncoder", "EncoderSettings", "LatentKind", "resolve_device"]

LatentKind = Literal["mean", "sample", "moments"]


class EncoderSettings(BaseModel):
    """Which model encodes, on what device and precision, and which latent it returns."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    source: str | None = Field(
        default=None, description="model dir, weights file or hub id; default: the bundled model"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        default="auto",
        description="auto: bfloat16 on GPU and on CPUs with AMX-BF16, else float32 (model.precision)",
    )
    force_dtype: bool = Field(
        default=False,
        description="run bfloat16/float16 even on a CPU without fast kernels for it (else refused)",
    )
    device: str = Field(default="auto", description="auto: cuda when available, else cpu")
    chunk_frames: int | None = Field(
        default=None,
        ge=1,
        description="Causal Cache chunk (frames) for long clips; None: whole clip",
    )
    latent_kind: LatentKind = Field(
        default="mean",
        description="mean, a sample (seeded per clip key), or the moments (mean, logvar)",
    )
    seed: int = Field(default=0, description="base seed for latent_kind='sample'")
    model_id: str | None = Field(
        default=None,
        description="the model's id in keys and metadata; default: name + weights hash",
    )


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`auto`/None: cuda when available, else cpu."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _clip_seed(base: int, key: str) -> int:
    """A per-clip seed, so a sampled latent does not depend on which batch the clip landed in."""
    return int.from_bytes(hashlib.sha256(f"{base}:{key}".encode()).digest()[:8], "little") >> 1


class ClipEncoder:
    """Loads the model once; encodes batches of same-shape clips to float32 numpy latents."""

    def __init__(
        self,
        model_source: str | Path | None = None,
        dtype: str | torch.dtype | DtypeChoice | None = "auto",
        device: str | torch.device | None = "auto",
        force_dtype: bool = False,
        chunk_frames: int | None = None,
        latent_kind: LatentKind = "mean",
        seed: int = 0,
        model_id: str | None = None,
    ) -> None:
        self.source = resolve_source(model_source)
        self.device = resolve_device(device)
        # A DtypeChoice is a decision made already (the pipeline's driver makes one per run, and
        # its reason is what the metadata records); the slow-precision rule still holds for it
        # on this device when the model loads.
        self.dtype_choice = (
            dtype
            if isinstance(dtype, DtypeChoice)
            else choose_dtype(dtype, self.device, force=force_dtype)
        )
        self.dtype = self.dtype_choice.dtype
        self.chunk_frames = chunk_frames
        self.latent_kind = latent_kind
        self.seed = seed
        self.model_id = model_id or model_identity(self.source)
        self.vae = load_wfvae(
            self.source, dtype=self.dtype, device=self.device, force_dtype=force_dtype
        )
        self.vae.eval()
        self.config_hash = config_hash(self.vae.config)
        log.info("loaded %s (%s) on %s as %s", self.model_id, self.source, self.device, self.dtype)

    @classmethod
    def from_settings(
        cls, settings: EncoderSettings, precision: DtypeChoice | None = None
    ) -> ClipEncoder:
        """The encoder `settings` describe; `precision`, where given, is the dtype decided for it."""
        return cls(
            model_source=settings.source,
            dtype=settings.dtype if precision is None else precision,
            device=settings.device,
            force_dtype=settings.force_dtype,
            chunk_frames=settings.chunk_frames,
            latent_kind=settings.latent_kind,
            seed=settings.seed,
            model_id=settings.model_id,
        )

    @property
    def config(self) -> WFVAEConfig:
        """The loaded model's config."""
        return self.vae.config

    @property
    def latent_channels(self) -> int:
        """Channels of a returned latent: latent_dim, or twice that for the moments."""
        dim = int(self.vae.config.latent_dim)
        return 2 * dim if self.latent_kind == "moments" else dim

    def metadata(self) -> dict[str, object]:
        """What a reader needs to know about these latents (for Parquet key-value metadata)."""
        return latent_metadata(self.vae.config, self.model_id, self.latent_kind, self.dtype_choice)

    @torch.inference_mode()
    def encode(
        self,
        x: torch.Tensor,
        keys: Sequence[str] | None = None,
        latent_kind: LatentKind | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """(B, 3, T, H, W) in [-1, 1] -> (B, C, 1 + (T-1)/4, H/8, W/8) float32 numpy.

        `latent_kind` and `seed` default to this encoder's; a caller (the service) may ask for
        others per call, with the same loaded model.
        """
        kind = self.latent_kind if latent_kind is None else latent_kind
        x = x.to(device=self.device, dtype=self.dtype)  # (B, 3, T, H, W)
        posterior = self.vae.encode(x, chunk_frames=self.chunk_frames)
        if kind == "mean":
            z = posterior.mean  # (B, C, t, h, w)
        elif kind == "moments":
            z = torch.cat([posterior.mean, posterior.logvar], dim=1)  # (B, 2C, t, h, w)
        else:
            z = _sample(posterior.mean, posterior.logvar, keys, self.seed if seed is None else seed)
        return z.float().cpu().numpy()

    def encode_clips(
        self,
        clips: Sequence[np.ndarray],
        keys: Sequence[str] | None = None,
        latent_kind: LatentKind | None = None,
        seed: int | None = None,
    ) -> np.ndarray:
        """Same-shape (T, H, W, 3) uint8 clips -> (B, C, t, h, w) float32 latents."""
        x = torch.cat([to_model_input(frames) for frames in clips])  # (B, 3, T, H, W)
        return self.encode(x, keys, latent_kind, seed)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, chunk_latents: int | None = None) -> torch.Tensor:
        """Latent means (B, C, t, h, w) -> video (B, 3, T, H, W) float32 on the CPU, by the same
        model, dtype and device; `chunk_latents` streams through the Causal Cache."""
        z = latents.to(device=self.device, dtype=self.dtype)
        return self.vae.decode(z, chunk_latents=chunk_latents).float().cpu()


def _sample(
    mean: torch.Tensor, logvar: torch.Tensor, keys: Sequence[str] | None, seed: int
) -> torch.Tensor:
    """mean + std * noise, the noise drawn per clip from `seed` and the clip's key."""
    names = list(keys) if keys is not None else [str(i) for i in range(mean.shape[0])]
    noise = torch.stack(
        [
            torch.randn(
                mean.shape[1:], generator=torch.Generator().manual_seed(_clip_seed(seed, k))
            )
            for k in names
        ]
    ).to(device=mean.device, dtype=mean.dtype)  # (B, C, t, h, w)
    return mean + torch.exp(0.5 * logvar) * noise
