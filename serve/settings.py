"""Service settings: one typed model for `build_app(args)`, read from `WFVAE_SERVE_*` env vars."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.latents import EncoderSettings
from model.media import ClipSettings
from model.storage import StorageSettings

from .uris import normalize_prefix

__all__ = ["ServeArgs", "ServeSettings", "resolve_settings"]

MIB = 1024 * 1024


class ServeArgs(BaseModel):
    """Everything the service can be told; the `args:` of a Serve config YAML validate against this.

    Fields left out fall back to `WFVAE_SERVE_<FIELD>` environment variables, then to these defaults
    (see `resolve_settings`).
    """

    model_config = ConfigDict(extra="forbid")

    # --- the model: the encoder settings the pipeline takes too, so /encode matches its rows ---
    encoder: EncoderSettings = Field(
        default_factory=EncoderSettings,
        description="model source, dtype, device, Causal Cache chunk, default latent kind and seed",
    )
    clip: ClipSettings = Field(
        default_factory=ClipSettings,
        description="default clip settings of /encode; each field can be overridden per request",
    )
    chunk_latents: int | None = Field(
        default=None, ge=1, description="decode long latents this many latent frames at a time"
    )
    torch_threads: int | None = Field(default=None, ge=1, description="torch CPU threads")

    # --- security and limits ---------------------------------------------------------------
    auth_token: SecretStr | None = Field(
        default=None, description="bearer token required on every route but /healthz and /readyz"
    )
    max_body_bytes: int = Field(default=64 * MIB, ge=1)
    max_frames: int = Field(default=129, ge=1, description="frames per clip, and per decode")
    max_pixels: int = Field(default=512 * 512, ge=64, description="height * width of a clip")
    max_clips: int = Field(default=8, ge=1, description="clips per /encode request")
    max_source_pixels: int = Field(
        default=3840 * 2160,
        ge=64,
        description="height * width of an uploaded video's frames, in its largest video stream",
    )
    max_aspect_ratio: float = Field(
        default=4.0,
        ge=1.0,
        description="longer side over shorter side, of a clip and of an uploaded video",
    )
    max_request_bytes: int = Field(
        default=1024 * MIB,
        ge=64 * MIB,
        description="memory one /encode request may hold (upload, decoding, clips, model "
        "input; serve/limits.py), computed before decoding; over it: 422",
    )
    max_latent_elements: int = Field(
        default=16 * 33 * 64 * 64,
        ge=1,
        description="largest latent accepted by /decode; default: a 16-channel latent of "
        "max_frames (129) at max_pixels (512x512)",
    )
    max_json_elements: int = Field(
        default=16 * 8192,
        ge=1,
        description="largest tensor answered or accepted as JSON; default: a 16-channel latent "
        "of 17x256x256 (81,920) fits",
    )
    request_timeout_s: float = Field(default=120.0, gt=0)
    body_idle_timeout_s: float = Field(
        default=10.0, gt=0, description="408 when a request body sends no bytes for this long"
    )
    storage_timeout_s: float = Field(
        default=30.0, gt=0, description="504 when object storage takes longer to hand over a URI"
    )
    storage_threads: int = Field(
        default=4,
        ge=1,
        description="threads reading URI bodies from object storage, apart from all other work",
    )
    allowed_uri_prefixes: list[str] = Field(
        default_factory=list,
        description="object-storage buckets or folders a JSON body {'uri': ...} may name "
        "(e.g. s3://videos-bucket/public/); empty: URI bodies are refused (403)",
    )
    storage: StorageSettings = Field(
        default_factory=StorageSettings, description="how to reach object storage for URI bodies"
    )

    # --- batching and scaling --------------------------------------------------------------
    max_batch_size: int = Field(default=8, ge=1)
    batch_wait_timeout_s: float = Field(default=0.02, ge=0)
    max_ongoing_requests: int = Field(
        default=32,
        ge=1,
        description="/encode and /decode requests a replica holds at once, uploads included; "
        "one more is answered 503 with Retry-After before its body is read",
    )
    max_queued_requests: int = Field(
        default=16,
        ge=0,
        description="requests each Serve proxy queues while every replica is full; beyond: 503",
    )
    retry_after_s: int = Field(
        default=2, ge=1, description="Retry-After (seconds) of a 503 for overload"
    )
    min_replicas: int = Field(default=1, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    initial_replicas: int | None = Field(default=None, ge=0)
    target_ongoing_requests: float = Field(default=8.0, gt=0)
    upscale_delay_s: float = Field(default=10.0, ge=0)
    downscale_delay_s: float = Field(default=300.0, ge=0)
    num_cpus: float = Field(default=1.0, ge=0, description="CPUs reserved per replica")
    num_gpus: float | Literal["auto"] = Field(
        default="auto", description="'auto': one GPU per replica when the cluster has GPUs"
    )

    @field_validator("allowed_uri_prefixes")
    @classmethod
    def _normalize_prefixes(cls, prefixes: list[str]) -> list[str]:
        return [normalize_prefix(p) for p in prefixes]

    @model_validator(mode="after")
    def _check_ranges(self) -> ServeArgs:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"min_replicas ({self.min_replicas}) exceeds max_replicas ({self.max_replicas})"
            )
        if self.max_ongoing_requests < self.max_batch_size:
            raise ValueError(
                f"max_ongoing_requests ({self.max_ongoing_requests}) below max_batch_size "
                f"({self.max_batch_size}) would keep batches from filling"
            )
        return self

    def autoscaling_config(self) -> dict[str, object]:
        """Serve's autoscaling config for the deployment."""
        return {
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "initial_replicas": self.initial_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
            "upscale_delay_s": self.upscale_delay_s,
            "downscale_delay_s": self.downscale_delay_s,
        }


class ServeSettings(BaseSettings, ServeArgs):
    """`ServeArgs` filled from the environment: `WFVAE_SERVE_MAX_BODY_BYTES=1048576`,
    `WFVAE_SERVE_ENCODER__SOURCE=/models/wfvae-l`, `WFVAE_SERVE_AUTH_TOKEN=...`."""

    model_config = SettingsConfigDict(
        env_prefix="WFVAE_SERVE_", env_nested_delimiter="__", extra="forbid"
    )


def resolve_settings(args: ServeArgs) -> ServeSettings:
    """Explicit args win; fields they leave out come from the environment, then the defaults."""
    if isinstance(args, ServeSettings):
        return args
    return ServeSettings(**args.model_dump(exclude_unset=True))
