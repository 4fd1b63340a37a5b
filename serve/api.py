"""The FastAPI routes: /encode, /decode, /healthz, /readyz, /v1/model, /openapi.json."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import Executor
from importlib import metadata as package_metadata
from typing import Protocol, TypeVar

import torch
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from model.media import ClipSettings, sample_clips
from pipeline.records import clip_key

from .admission import RequestSlots
from .auth import bearer_auth
from .bodies import VIDEO_BODY_TYPES, content_type_of, read_body, video_from_body
from .engine import DecodeJob, EncodeJob, Job, JobResult, LatentEngine
from .errors import (
    LimitExceeded,
    RequestTimeout,
    UnsupportedMediaType,
    install_error_handlers,
    refusing,
)
from .latents import JSON_TYPES, NPY_TYPES, SAFETENSORS_TYPES, LatentLimits, parse_latent
from .request_memory import probe_video_streams, worst_encode_footprint
from .responses import decode_response, encode_response
from .schemas import (
    DecodeOptions,
    EncodeOptions,
    ModelInfo,
    check_clip_count,
    check_encode_memory,
    check_source_size,
    parse_encode_query,
    query_parameters,
)
from .settings import ServeSettings

__all__ = ["Backend", "Stopwatch", "create_api", "service_version"]

T = TypeVar("T")
LATENT_BODY_TYPES = [*SAFETENSORS_TYPES, *NPY_TYPES, *JSON_TYPES]
PACKAGE = "wfvae-latents"


class Backend(Protocol):
    """What the routes need from the replica: the loaded model and the batch queue."""

    replica_id: str

    async def engine(self) -> LatentEngine: ...

    def load_state(self) -> tuple[bool, str | None]: ...

    async def submit(self, job: Job) -> JobResult: ...

    @property
    def slots(self) -> RequestSlots: ...

    @property
    def storage_pools(self) -> Mapping[str, Executor]: ...




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


def _body_doc(types: Sequence[str], description: str) -> dict[str, object]:
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"description": description, "required": True, "content": {t: binary for t in types}}


def create_api(backend: Backend, settings: ServeSettings) -> FastAPI:
    """The service's ASGI app for one replica (built on the replica, never at import)."""
    app = FastAPI(
        title="WF-VAE latent service",
        version=service_version(),
        description="Encode videos to WF-VAE latents and decode latents to videos.",
        docs_url=None,  # the interactive docs load scripts from a CDN; /openapi.json is the schema
        redoc_url=None,
        openapi_url=None,  # served below, behind the same auth as the API
    )
    install_error_handlers(app)
    public = APIRouter(tags=["health"])
    private = APIRouter(dependencies=[Depends(bearer_auth(settings.auth_token))])

    async def bounded(work: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(work, timeout=settings.request_timeout_s)
        except asyncio.TimeoutError as error:
            raise RequestTimeout(settings.request_timeout_s) from error

    def finish(
        response: Response, results: Sequence[JobResult], timings: dict[str, float]
    ) -> Response:
        """Batch size, replica and a Server-Timing header (ms) on an /encode or /decode answer."""
        response.headers["X-Batch-Size"] = str(max(r.batch_size for r in results))
        response.headers["X-Replica-Id"] = backend.replica_id
        timings["model"] = max(r.seconds for r in results)
        response.headers["Server-Timing"] = ", ".join(
            f"{name};dur={1000 * seconds:.1f}" for name, seconds in timings.items()
        )
        return response

    @public.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Alive: the replica answers HTTP (the model may still be loading)."""
        return {"status": "alive"}

    @public.get("/readyz", responses={503: {"description": "model loading or failed to load"}})
    async def readyz() -> JSONResponse:
        """Ready: the model is loaded and warmed up."""
        ready, problem = backend.load_state()
        if ready:
            return JSONResponse({"status": "ready"})
        status = "failed" if problem else "loading"
        return JSONResponse({"status": status, "detail": problem}, status_code=503)

    @private.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The model: config, compression, channels, scale/shift, versions, and the limits."""
        engine = await bounded(backend.engine())
        worst_request = worst_encode_footprint(
            settings.max_body_bytes,
            settings.max_source_pixels,
            settings.max_frames,
            settings.max_pixels,
            settings.max_clips,
            settings.max_aspect_ratio,
        )
        limits = {
            name: getattr(settings, name)
            for name in (
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
        }
        return ModelInfo.model_validate(
            {
                **engine.model_info(),
                "service_version": service_version(),
                "limits": limits,
                "allowed_uri_prefixes": settings.allowed_uri_prefixes,
                "worst_request_bytes": worst_request.total,
            }
        )

    @private.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, object]:
        return app.openapi()

    @private.post(
        "/encode",
        response_class=Response,
        responses={200: {"content": {"application/vnd.safetensors": {}, "application/json": {}}}},
        openapi_extra={
            "parameters": query_parameters(EncodeOptions, ClipSettings),
            "requestBody": _body_doc(
                [
                    "video/mp4",
                    "application/octet-stream",
                    "multipart/form-data",
                    "application/json",
                ],
                'video bytes; a multipart upload (field \'video\'); or JSON {"uri": "s3://..."}',
            ),
        },
    )
    async def encode(request: Request) -> Response:
        """A video to its latent, exactly as the pipeline would write it (one row per clip)."""
        with backend.slots.hold():  # 503 at once when every slot is taken, before the body
            return await bounded(_encode(request))

    async def _encode(request: Request) -> Response:
        content_type = content_type_of(request)
        if not (content_type.startswith("video/") or content_type in VIDEO_BODY_TYPES):
            raise UnsupportedMediaType(content_type, VIDEO_BODY_TYPES)
        options, clip_settings = parse_encode_query(request.query_params, settings)
        body = await read_body(request, settings.max_body_bytes, settings.body_idle_timeout_s)
        video, source = await video_from_body(request, body, settings, backend.storage_pools)
        engine = await backend.engine()
        clock = Stopwatch()
        stream = await asyncio.to_thread(probe_video_streams, video)
        check_source_size(stream, settings)
        check_encode_memory(len(video), stream, clip_settings, settings)  # before decoding
        with refusing("these clip settings cannot be applied to this video", LimitExceeded):
            clips = await asyncio.to_thread(sample_clips, video, clip_settings)
        clock.lap("video")
        check_clip_count(len(clips), settings)
        if options.key is not None and len(clips) != 1:
            raise LimitExceeded(f"key names one clip, but these settings cut {len(clips)} clips")
        latent_kind = options.latent or engine.encoder.latent_kind
        seed = options.seed if options.seed is not None else engine.encoder.seed
        keys = (
            [options.key]
            if options.key is not None
            else [
                clip_key(
                    source_uri=source,
                    member_key="",
                    version="",
                    frame_indices=clip.frame_indices,
                    target_size=clip.target_size,
                    resize_mode=clip_settings.resize_mode,
                    model_id=engine.encoder.model_id,
                    latent_kind=latent_kind,
                )
                for clip in clips
            ]
        )
        jobs = [
            EncodeJob(clip.frames, latent_kind, seed, key)  # (T, H, W, 3) uint8
            for clip, key in zip(clips, keys, strict=True)
        ]
        results = await asyncio.gather(*(backend.submit(job) for job in jobs))
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
        return finish(response, results, clock.laps)

    @private.post(
        "/decode",
        response_class=Response,
        responses={200: {"content": {"video/mp4": {}, "application/vnd.safetensors": {}}}},
        openapi_extra={
            "parameters": query_parameters(DecodeOptions),
            "requestBody": _body_doc(
                LATENT_BODY_TYPES,
                "a latent (C, t, h, w) or (B, C, t, h, w): safetensors (tensor 'latent'), .npy, "
                'or JSON {"latent": [...]}',
            ),
        },
    )
    async def decode(request: Request) -> Response:
        """A latent to an MP4 (or raw frames)."""
        with backend.slots.hold():
            return await bounded(_decode(request))

    async def _decode(request: Request) -> Response:
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
        latent = await asyncio.to_thread(
            parse_latent, body, content_type, limits
        )  # (B, C, t, h, w)
        if options.format == "mp4" and latent.shape[0] != 1:
            raise LimitExceeded(
                f"an MP4 holds one video but the latent holds {latent.shape[0]}; "
                "send one latent, or ask format=safetensors"
            )
        clock = Stopwatch()
        result = await backend.submit(DecodeJob(latent.float()))
        clock.lap("batch")
        response = await asyncio.to_thread(
            decode_response, result.unwrap(), options, engine.encoder.model_id
        )
        clock.lap("respond")
        return finish(response, [result], clock.laps)

    app.include_router(public)
    app.include_router(private)
    return app
