"""POST /decode: latents (safetensors, .npy or JSON) to an MP4 or raw frames."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from .bodies import content_type_of, read_body
from .engine import DecodeJob
from .errors import LimitExceeded, UnsupportedMediaType
from .latents import JSON_TYPES, NPY_TYPES, SAFETENSORS_TYPES, LatentLimits, parse_latent
from .responses import decode_response
from .routing import Backend, Stopwatch, body_doc, with_timeout, with_timings
from .schemas import DecodeOptions, query_parameters
from .settings import ServeSettings

__all__ = ["LATENT_BODY_TYPES", "decode_route"]

LATENT_BODY_TYPES = [*SAFETENSORS_TYPES, *NPY_TYPES, *JSON_TYPES]


def decode_route(backend: Backend, settings: ServeSettings) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/decode",
        response_class=Response,
        responses={200: {"content": {"video/mp4": {}, "application/vnd.safetensors": {}}}},
        openapi_extra={
            "parameters": query_parameters(DecodeOptions),
            "requestBody": body_doc(
                LATENT_BODY_TYPES,
                "a latent (C, t, h, w) or (B, C, t, h, w): safetensors (tensor 'latent'), .npy, "
                'or JSON {"latent": [...]}',
            ),
        },
    )
    async def decode(request: Request) -> Response:
        """A latent to an MP4 (or raw frames)."""
        with backend.slots.hold():
            return await with_timeout(_decode(request, backend, settings), settings.request_timeout_s)

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
    response = await asyncio.to_thread(decode_response, result.unwrap(), options, engine.encoder.model_id)
    clock.lap("respond")
    return with_timings(response, [result], clock.laps, backend.replica_id)
