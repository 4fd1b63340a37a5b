"""/v1/model and /openapi.json: what the replica runs and the limits it enforces."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter

from .request_memory import worst_encode_footprint
from .routing import Backend, service_version, with_timeout
from .schemas import ModelInfo
from .settings import ServeSettings

__all__ = ["REPORTED_LIMITS", "model_routes"]

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


def model_routes(backend: Backend, settings: ServeSettings, openapi: Callable[[], dict[str, object]]) -> APIRouter:
    router = APIRouter()

    @router.get("/v1/model", response_model=ModelInfo)
    async def model_info() -> ModelInfo:
        """The model: config, compression, channels, scale/shift, versions, and the limits."""
        engine = await with_timeout(backend.engine(), settings.request_timeout_s)
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
