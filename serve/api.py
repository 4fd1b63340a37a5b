"""The replica's ASGI app: the public health routes, and the model, /encode and /decode behind the token."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI

from .auth import bearer_auth
from .decode_route import decode_route
from .encode_route import encode_route
from .errors import install_error_handlers
from .health import health_routes
from .model_routes import model_routes
from .routing import Backend, service_version
from .settings import ServeSettings

__all__ = ["create_api"]


def create_api(backend: Backend, settings: ServeSettings) -> FastAPI:
    """The service's ASGI app for one replica (built on the replica, never at import)."""
    app = FastAPI(
        title="WF-VAE latent service",
        version=service_version(),
        description="Encode videos to WF-VAE latents and decode latents to videos.",
        docs_url=None,  # the interactive docs load scripts from a CDN; /openapi.json is the schema
        redoc_url=None,
        openapi_url=None,  # served by model_routes, behind the same token as the API
    )
    install_error_handlers(app)
    private = APIRouter(dependencies=[Depends(bearer_auth(settings.auth_token))])
    private.include_router(model_routes(backend, settings, app.openapi))
    private.include_router(encode_route(backend, settings))
    private.include_router(decode_route(backend, settings))
    app.include_router(health_routes(backend))
    app.include_router(private)
    return app
