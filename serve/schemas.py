"""Request options of `/encode` and `/decode`, validated by pydantic and checked against the limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from model.latents import LatentKind
from model.media import ClipSettings

from .errors import LimitExceeded
from .request_memory import MIB, EncodeFootprint, StreamSize, encode_footprint
from .settings import ServeSettings

__all__ = [
    "DecodeOptions",
    "EncodeOptions",
    "ModelInfo",
    "check_clip_count",
    "check_encode_memory",
    "check_source_size",
    "parse_encode_query",
    "query_parameters",
]

TensorDtype = Literal["float32", "float16", "bfloat16"]


class EncodeOptions(BaseModel):
    """The service's own `/encode` query parameters; every other parameter is a `ClipSettings` field."""

    model_config = ConfigDict(extra="forbid")

    latent: LatentKind | None = Field(
        default=None,
        description="mean, sample or moments (mean then logvar); default: the service's",
    )
    seed: int | None = Field(default=None, description="base seed of latent=sample")
    key: str | None = Field(
        default=None,
        min_length=1,
        description="clip key seeding latent=sample (a pipeline row's key reproduces it); one clip only",
    )
    format: Literal["safetensors", "json"] = Field(
        default="safetensors", description="safetensors bytes, or JSON for small latents"
    )
    dtype: TensorDtype = Field(default="float32", description="dtype of the returned latent")


class DecodeOptions(BaseModel):
    """`/decode` query parameters."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["mp4", "safetensors"] = Field(
        default="mp4", description="an H.264 MP4, or the frames as safetensors"
    )
    fps: float = Field(default=16.0, gt=0, le=240, description="frame rate of the MP4")
    frames_dtype: Literal["uint8", "float32"] = Field(
        default="uint8",
        description="safetensors only: uint8 frames (B, T, H, W, 3), or the model's float32 "
        "output (B, 3, T, H, W) in about [-1, 1]",
    )


class ModelInfo(BaseModel):
    """`GET /v1/model`."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    service_version: str
    source: str
    config_hash: str
    device: str
    dtype: str
    latent_kind: str = Field(description="the default of /encode's `latent`")
    latent_dim: int
    latent_channels: int
    temporal_compression: int
    spatial_compression: int
    scale: list[float]
    shift: list[float]
    chunk_frames: int | None
    chunk_latents: int | None
    torch_threads: int = Field(description="intra-op threads of the replica's model thread")
    config: dict[str, object]
    limits: dict[str, int | float]
    allowed_uri_prefixes: list[str] = Field(
        description="what a JSON body {'uri': ...} of /encode may name; empty: URI bodies are off"
    )
    worst_request_bytes: int = Field(
        description="memory of the worst /encode the limits allow (serve/request_memory.py); "
        "requests over limits.max_request_bytes are refused before decoding"
    )


def parse_encode_query(
    query: Mapping[str, str], settings: ServeSettings
) -> tuple[EncodeOptions, ClipSettings]:
    """Split the query into the service's options and the clip settings, validate, check limits.

    Clip fields left out keep the service's configured `clip` settings.
    """
    service = {k: v for k, v in query.items() if k in EncodeOptions.model_fields}
    clip_fields = {k: v for k, v in query.items() if k not in EncodeOptions.model_fields}
    options = EncodeOptions.model_validate(service)
    base = settings.clip.model_dump(exclude_unset=True)
    clip = ClipSettings.model_validate({**base, **clip_fields})
    return options, _limit_clip_settings(clip, settings)


def _limit_clip_settings(clip: ClipSettings, settings: ServeSettings) -> ClipSettings:
    """Refuse geometries over the limits; cap `clip_mode=all` so a long video cannot fan out."""
    geometries = [(b.num_frames, b.height, b.width) for b in clip.buckets] or [
        (clip.num_frames, clip.height, clip.width)
    ]
    for frames, height, width in geometries:
        if max(height, width) > settings.max_aspect_ratio * min(height, width):
            raise LimitExceeded(
                f"clips of {height}x{width} asked; the longer side may be at most "
                f"{settings.max_aspect_ratio:g} times the shorter"
            )
        if frames > settings.max_frames:
            raise LimitExceeded(
                f"clips of {frames} frames asked; the limit is {settings.max_frames}"
            )
        if height * width > settings.max_pixels:
            raise LimitExceeded(
                f"clips of {height}x{width} = {height * width} pixels asked; "
                f"the limit is {settings.max_pixels} pixels per frame"
            )
    if clip.num_clips is not None and clip.num_clips > settings.max_clips:
        raise LimitExceeded(f"num_clips={clip.num_clips}; the limit is {settings.max_clips}")
    if clip.clip_mode == "all" and clip.num_clips is None:
        # One clip past the limit tells "too many" from "exactly the limit" (see check_clip_count).
        clip = clip.model_copy(update={"num_clips": settings.max_clips + 1})
    return clip


def check_source_size(stream: StreamSize, settings: ServeSettings) -> None:
    """Refuse a video whose largest stream is too large, or too narrow, to decode within bounds."""
    if stream.pixels > settings.max_source_pixels:
        raise LimitExceeded(
            f"the video is {stream.width}x{stream.height} = {stream.pixels} pixels per frame "
            f"(the largest of its {stream.streams} video streams); the limit is "
            f"{settings.max_source_pixels}"
        )
    longer, shorter = max(stream.height, stream.width), min(stream.height, stream.width)
    if longer > settings.max_aspect_ratio * shorter:
        raise LimitExceeded(
            f"the video is {stream.width}x{stream.height}; the longer side may be at most "
            f"{settings.max_aspect_ratio:g} times the shorter"
        )


def check_encode_memory(
    body_bytes: int, stream: StreamSize, clip: ClipSettings, settings: ServeSettings
) -> EncodeFootprint:
    """The request's footprint (its largest geometry, its most clips); refused over the budget."""
    geometries = [(b.num_frames, b.height, b.width) for b in clip.buckets] or [
        (clip.num_frames, clip.height, clip.width)
    ]
    clips = 1 if clip.clip_mode == "first" else min(clip.num_clips or 1, settings.max_clips)
    footprint = max(
        (
            encode_footprint(
                body_bytes, (stream.height, stream.width), geometry, clips, clip.resize_mode
            )
            for geometry in geometries
        ),
        key=lambda f: f.total,
    )
    if footprint.total > settings.max_request_bytes:
        raise LimitExceeded(
            f"this request would hold about {footprint.describe()} in memory; the budget per "
            f"request (max_request_bytes) is {settings.max_request_bytes // MIB} MiB: ask fewer "
            f"clips or frames, a smaller size, or send a smaller video (largest: {footprint.largest()})"
        )
    return footprint


def check_clip_count(count: int, settings: ServeSettings) -> None:
    if count > settings.max_clips:
        raise LimitExceeded(
            f"the video yields more than {settings.max_clips} clips (the limit per request); "
            "set num_clips, or clip_mode=first or uniform"
        )


def query_parameters(*models: type[BaseModel]) -> list[dict[str, object]]:
    """OpenAPI query parameters for the fields of `models` (routes that read the query themselves)."""
    parameters = []
    for model in models:
        schema = model.model_json_schema()
        for name, prop in schema.get("properties", {}).items():
            value_schema = {k: v for k, v in prop.items() if k != "description"}
            if "$ref" in json.dumps(value_schema):  # a nested model (buckets) travels as text
                value_schema = {"type": "string", "example": "17x256x256,17x256x448"}
            parameters.append(
                {
                    "name": name,
                    "in": "query",
                    "required": False,
                    "description": prop.get("description", ""),
                    "schema": value_schema,
                }
            )
    return parameters
