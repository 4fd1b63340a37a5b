"""The routes: `POST /encode` and `POST /decode` (each in a request slot, under the request
timeout), `GET /healthz` and `/readyz` (public, outside the slots, so probes answer under any
load), `GET /v1/model` and `/openapi.json`; and what they share: the replica as they see it,
timing headers, OpenAPI docs of the bodies and queries they read themselves."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import Executor
from importlib import metadata as package_metadata
from typing import Protocol

import torch
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from model.latents import VideoOrigin, clip_key
from model.media import Clip, ClipSettings, probe_video, sample_clips

from .admission import RequestSlots, within
from .engine import DecodeJob, EncodeJob, Job, JobResult, LatentEngine
from .errors import LimitExceeded, RequestTimeout, UnsupportedMediaType, refusing
from .formats import (
    JSON_TYPES,
    MP4_MEDIA_TYPE,
    NPY_TYPES,
    SAFETENSORS_MEDIA_TYPE,
    SAFETENSORS_TYPES,
    LatentLimits,
    ModelInfo,
    decode_response,
    encode_response,
    parse_latent,
)
from .inputs import (
    VIDEO_BODY_TYPES,
    DecodeOptions,
    EncodeOptions,
    content_type_of,
    parse_encode_query,
    read_body,
    video_from_body,
)
from .limits import (
    check_clip_count,
    check_encode_memory,
    check_source_size,
    stream_size,
    worst_encode_footprint,
)
from .settings import ServeSettings

__all__ = [
    "LATENT_BODY_TYPES",
    "REPORTED_LIMITS",
    "Backend",
    "Stopwatch",
    "bytes_in_bytes_out",
    "decode_route",
    "encode_route",
    "health_routes",
    "in_a_slot",
    "model_routes",
    "query_parameters",
    "service_version",
    "with_timings",
]

PACKAGE = "wfvae-latents"
LATENT_BODY_TYPES = [*SAFETENSORS_TYPES, *NPY_TYPES, *JSON_TYPES]
REPORTED_LIMITS = (
    "max_body_bytes",
    "max_frames",
    "max_pixels",
    "max_clips",
    "max_source_pixels",
    "max_aspect_ratio",
    "max_request_bytes",
    "max_latent_elements",
    "max_json_elements",
    "request_timeout_s",
    "body_idle_timeout_s",
    "storage_timeout_s",
    "max_ongoing_requests",
    "max_queued_requests",
    "max_batch_size",
)


class Backend(Protocol):
    """What the routes need from the replica: the loaded model, the batch queue, its limits."""

    replica_id: str

    async def engine(self) -> LatentEngine: ...

    def load_state(self) -> tuple[bool, str | None]: ...

    async def submit(self, job: Job) -> JobResult: ...

    @property
    def slots(self) -> RequestSlots: ...

    @property
    def storage_pools(self) -> Mapping[str, Executor]: ...


# --- what the routes share ---------------------------------------------------------------
def service_version() -> str:
    try:
        return package_metadata.version(PACKAGE)
    except package_metadata.PackageNotFoundError:
        return "unknown"


class Stopwatch:
    """Named laps of wall time, for the Server-Timing header."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = now - self._last
        self._last = now


def with_timings(
    response: Response, results: Sequence[JobResult], laps: dict[str, float], replica_id: str
) -> Response:
    """Batch size, replica and a Server-Timing header (ms) on an /encode or /decode answer."""
    response.headers["X-Batch-Size"] = str(max(r.batch_size for r in results))
    response.headers["X-Replica-Id"] = replica_id
    laps["model"] = max(r.seconds for r in results)
    response.headers["Server-Timing"] = ", ".join(
        f"{name};dur={1000 * s:.1f}" for name, s in laps.items()
    )
    return response


def bytes_in_bytes_out(
    answers: Sequence[str],
    query: Sequence[type[BaseModel]],
    bodies: Sequence[str],
    body: str,
) -> dict[str, object]:
    """The route options of `/encode` and `/decode`, which read their own query and raw body:
    answers in the `answers` media types, the query's fields documented from the `query` models,
    and a body of raw bytes in any of `bodies`, described as `body`."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        "response_class": Response,
        "responses": {200: {"content": {media_type: {} for media_type in answers}}},
        "openapi_extra": {
            "parameters": query_parameters(*query),
            "requestBody": {
                "description": body,
                "required": True,
                "content": {media_type: binary for media_type in bodies},
            },
        },
    }


async def in_a_slot(
    handle: Callable[[Request, Backend, ServeSettings], Awaitable[Response]],
    request: Request,
    backend: Backend,
    settings: ServeSettings,
) -> Response:
    """`handle(request)` in one of the replica's request slots (503 at once when every one is
    taken, before the body is read), abandoned with a 504 after `request_timeout_s`."""
    with backend.slots.hold():
        work = handle(request, backend, settings)
        return await within(settings.request_timeout_s, work, RequestTimeout)


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


# --- health and model information ---------------------------------------------------------
def health_routes(backend: Backend) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the replica answers HTTP (the model may still be loading)."""
        return {"status": "alive"}

    @router.get("/readyz", responses={503: {"description": "model loading or failed to load"}})
    async def readyz() -> JSONResponse:
        """Ready: the model is loaded and warmed up."""
        ready, problem = backend.load_state()
        if ready:
            return JSONResponse({"status": "ready"})
        status = "failed" if problem else "loading"
        return JSONResponse({"status": status, "detail": problem}, status_code=503)

    return router


def model_routes(
    backend: Backend, settings: ServeSettings, openapi: Callable[[], dict[str, object]]
) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The model: config, compression, channels, scale/shift, versions, and the limits."""
        engine = await within(settings.request_timeout_s, backend.engine(), RequestTimeout)
        worst_request = worst_encode_footprint(
            settings.max_body_bytes,
            settings.max_source_pixels,
            settings.max_frames,
            settings.max_pixels,
            settings.max_clips,
            settings.max_aspect_ratio,
        )
        return ModelInfo.model_validate(
            {
                **engine.model_info(),
                "service_version": service_version(),
                "limits": {name: getattr(settings, name) for name in REPORTED_LIMITS},
                "allowed_uri_prefixes": settings.allowed_uri_prefixes,
                "worst_request_bytes": worst_request.total,
            }
        )

    @router.get("/openapi.json", include_in_schema=False)
    async def openapi_schema() -> dict[str, object]:
        return openapi()

    return router


# --- POST /encode -------------------------------------------------------------------------
def encode_route(backend: Backend, settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/encode",
        **bytes_in_bytes_out(
            answers=[SAFETENSORS_MEDIA_TYPE, "application/json"],
            query=[EncodeOptions, ClipSettings],
            bodies=[
                "video/mp4",
                "application/octet-stream",
                "multipart/form-data",
                "application/json",
            ],
            body='video bytes; a multipart upload (field \'video\'); or JSON {"uri": "s3://..."}',
        ),
    )
    async def encode(request: Request) -> Response:
        """A video to its latent, exactly as the pipeline would write it (one row per clip)."""
        return await in_a_slot(_encode, request, backend, settings)

    return router


async def _encode(request: Request, backend: Backend, settings: ServeSettings) -> Response:
    content_type = content_type_of(request)
    if not (content_type.startswith("video/") or content_type in VIDEO_BODY_TYPES):
        raise UnsupportedMediaType(content_type, VIDEO_BODY_TYPES)
    options, clip_settings = parse_encode_query(request.query_params, settings)
    body = await read_body(request, settings.max_body_bytes, settings.body_idle_timeout_s)
    video, source = await video_from_body(request, body, settings, backend.storage_pools)
    engine = await backend.engine()
    clock = Stopwatch()
    clips = await _cut_clips(video, clip_settings, settings)
    clock.lap("video")
    if options.key is not None and len(clips) != 1:
        raise LimitExceeded(f"key names one clip, but these settings cut {len(clips)} clips")
    latent_kind = options.latent or engine.encoder.latent_kind
    seed = options.seed if options.seed is not None else engine.encoder.seed
    if options.key is not None:
        keys = [options.key]
    else:  # the keys the pipeline would give these clips (they also seed sampled latents)
        origin, model_id = VideoOrigin(source), engine.encoder.model_id
        keys = [
            clip_key(origin, c, clip_settings.resize_mode, model_id, latent_kind) for c in clips
        ]
    results = await _encode_clips(backend, clips, keys, latent_kind, seed)
    clock.lap("batch")  # waiting for the batch to fill, then the forward pass
    latent = torch.cat([r.unwrap() for r in results])  # (N, C, t, h, w)
    metadata = {
        **engine.encoder.metadata(),
        "latent_kind": latent_kind,
        "seed": seed,
        "source": source,
    }
    response = await asyncio.to_thread(
        encode_response, latent, clips, keys, metadata, options, settings.max_json_elements
    )
    clock.lap("respond")
    return with_timings(response, results, clock.laps, backend.replica_id)


async def _cut_clips(
    video: bytes, clip_settings: ClipSettings, settings: ServeSettings
) -> list[Clip]:
    """The clips, once the container's header shows the request fits the limits and the memory budget."""
    info = await asyncio.to_thread(probe_video, video)  # the header, read once
    stream = stream_size(info)
    check_source_size(stream, settings)
    check_encode_memory(len(video), stream, clip_settings, settings)  # before decoding
    with refusing("these clip settings cannot be applied to this video", LimitExceeded):
        clips = await asyncio.to_thread(sample_clips, video, clip_settings, info)
    check_clip_count(len(clips), settings)
    return clips


async def _encode_clips(
    backend: Backend, clips: list[Clip], keys: list[str], latent_kind: str, seed: int
) -> list[JobResult]:
    """One job per clip through the replica's batch queue; each result in the clips' order."""
    jobs = [
        EncodeJob(clip.frames, latent_kind, seed, key)
        for clip, key in zip(clips, keys, strict=True)
    ]
    return list(await asyncio.gather(*(backend.submit(job) for job in jobs)))


# --- POST /decode -------------------------------------------------------------------------
def decode_route(backend: Backend, settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/decode",
        **bytes_in_bytes_out(
            answers=[MP4_MEDIA_TYPE, SAFETENSORS_MEDIA_TYPE],
            query=[DecodeOptions],
            bodies=LATENT_BODY_TYPES,
            body="a latent (C, t, h, w) or (B, C, t, h, w): safetensors (tensor 'latent'), .npy, "
            'or JSON {"latent": [...]}',
        ),
    )
    async def decode(request: Request) -> Response:
        """A latent to an MP4 (or raw frames)."""
        return await in_a_slot(_decode, request, backend, settings)

    return router


async def _decode(request: Request, backend: Backend, settings: ServeSettings) -> Response:
    content_type = content_type_of(request)
    if content_type not in LATENT_BODY_TYPES:
        raise UnsupportedMediaType(content_type, LATENT_BODY_TYPES)
    options = DecodeOptions.model_validate(dict(request.query_params))
    body = await read_body(request, settings.max_body_bytes, settings.body_idle_timeout_s)
    engine = await backend.engine()
    limits = LatentLimits(
        latent_dim=engine.latent_dim,
        max_latent_elements=settings.max_latent_elements,
        max_json_elements=settings.max_json_elements,
        max_frames=settings.max_frames,
        max_pixels=settings.max_pixels,
    )
    latent = await asyncio.to_thread(parse_latent, body, content_type, limits)  # (B, C, t, h, w)
    if options.format == "mp4" and latent.shape[0] != 1:
        raise LimitExceeded(
            f"an MP4 holds one video but the latent holds {latent.shape[0]}; "
            "send one latent, or ask format=safetensors"
        )
    clock = Stopwatch()
    result = await backend.submit(DecodeJob(latent.float()))
    clock.lap("batch")
    model_id = engine.encoder.model_id
    response = await asyncio.to_thread(decode_response, result.unwrap(), options, model_id)
    clock.lap("respond")
    return with_timings(response, [result], clock.laps, backend.replica_id)
