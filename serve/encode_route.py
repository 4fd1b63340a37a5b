"""POST /encode: a video (bytes, upload or allowed URI) to the latents of its clips, as the pipeline writes them."""

from __future__ import annotations

import asyncio

import torch
from fastapi import APIRouter, Request
from fastapi.responses import Response

from model.latents import VideoOrigin, clip_key
from model.media import Clip, ClipSettings, probe_video, sample_clips

from .bodies import VIDEO_BODY_TYPES, content_type_of, read_body, video_from_body
from .engine import EncodeJob, JobResult, LatentEngine
from .errors import LimitExceeded, UnsupportedMediaType, refusing
from .request_memory import stream_size
from .responses import encode_response
from .routing import Backend, Stopwatch, body_doc, with_timeout, with_timings
from .schemas import (
    EncodeOptions,
    check_clip_count,
    check_encode_memory,
    check_source_size,
    parse_encode_query,
    query_parameters,
)
from .settings import ServeSettings

__all__ = ["encode_route"]


def encode_route(backend: Backend, settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/encode",
        response_class=Response,
        responses={200: {"content": {"application/vnd.safetensors": {}, "application/json": {}}}},
        openapi_extra={
            "parameters": query_parameters(EncodeOptions, ClipSettings),
            "requestBody": body_doc(
                ["video/mp4", "application/octet-stream", "multipart/form-data", "application/json"],
                'video bytes; a multipart upload (field \'video\'); or JSON {"uri": "s3://..."}',
            ),
        },
    )
    async def encode(request: Request) -> Response:
        """A video to its latent, exactly as the pipeline would write it (one row per clip)."""
        with backend.slots.hold():  # 503 at once when every slot is taken, before the body
            return await with_timeout(_encode(request, backend, settings), settings.request_timeout_s)

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
    keys = [options.key] if options.key is not None else _clip_keys(clips, source, clip_settings, engine, latent_kind)
    results = await _encode_clips(backend, clips, keys, latent_kind, seed)
    clock.lap("batch")  # waiting for the batch to fill, then the forward pass
    latent = torch.cat([r.unwrap() for r in results])  # (N, C, t, h, w)
    metadata = {**engine.encoder.metadata(), "latent_kind": latent_kind, "seed": seed, "source": source}
    response = await asyncio.to_thread(
        encode_response, latent, clips, keys, metadata, options, settings.max_json_elements
    )
    clock.lap("respond")
    return with_timings(response, results, clock.laps, backend.replica_id)


async def _cut_clips(video: bytes, clip_settings: ClipSettings, settings: ServeSettings) -> list[Clip]:
    """The clips, once the container's header shows the request fits the limits and the memory budget."""
    info = await asyncio.to_thread(probe_video, video)  # the header, read once
    stream = stream_size(info)
    check_source_size(stream, settings)
    check_encode_memory(len(video), stream, clip_settings, settings)  # before decoding
    with refusing("these clip settings cannot be applied to this video", LimitExceeded):
        clips = await asyncio.to_thread(sample_clips, video, clip_settings, info)
    check_clip_count(len(clips), settings)
    return clips


def _clip_keys(
    clips: list[Clip], source: str, clip_settings: ClipSettings, engine: LatentEngine, latent_kind: str
) -> list[str]:
    """The keys the pipeline would give these clips (they also seed sampled latents)."""
    origin = VideoOrigin(source)
    model_id = engine.encoder.model_id
    return [clip_key(origin, clip, clip_settings.resize_mode, model_id, latent_kind) for clip in clips]


async def _encode_clips(
    backend: Backend, clips: list[Clip], keys: list[str], latent_kind: str, seed: int
) -> list[JobResult]:
    """One job per clip through the replica's batch queue; each result in the clips' order."""
    jobs = [EncodeJob(clip.frames, latent_kind, seed, key) for clip, key in zip(clips, keys, strict=True)]
    return list(await asyncio.gather(*(backend.submit(job) for job in jobs)))
