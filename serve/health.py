"""/healthz and /readyz: public, outside the request slots, so probes answer under any load."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from .routing import Backend

__all__ = ["health_routes"]


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
