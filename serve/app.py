"""The Ray Serve deployment, its typed builder (`serve run serve.app:build_app`) and the ASGI app each replica serves."""

# No `from __future__ import annotations` here: Serve reads `build_app`'s annotation at run time
# to validate a config's `args:` into `ServeArgs`, and a string annotation would skip that.

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

import ray
from fastapi import APIRouter, Depends, FastAPI
from ray import serve
from ray.serve import Application
from ray.serve.config import BackpressureConfig

from .admission import PROBE_SLOTS, RequestSlots, bearer_auth
from .engine import Job, JobResult, LatentEngine
from .errors import install_error_handlers
from .routes import (
    Backend,
    decode_route,
    encode_route,
    health_routes,
    model_routes,
    service_version,
)
from .settings import ServeArgs, ServeSettings, resolve_settings

__all__ = ["LatentServer", "build_app", "create_api"]

logger = logging.getLogger(__name__)

# Defaults for one CPU replica; `build_app` sets the real values from the settings.
DEFAULT_MAX_BATCH_SIZE = 8
DEFAULT_BATCH_WAIT_S = 0.02


def create_api(backend: Backend, settings: ServeSettings) -> FastAPI:
    """The service's ASGI app for one replica (built on the replica, never at import): the public
    health routes, and the model, /encode and /decode behind the token."""
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


@serve.deployment(
    ray_actor_options={"num_cpus": 1, "num_gpus": 0},
    max_ongoing_requests=32,
    autoscaling_config={"min_replicas": 1, "max_replicas": 1, "target_ongoing_requests": 8},
    health_check_period_s=10,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=30,
)
@serve.ingress()
class LatentServer:
    """One replica: loads the model in the background, batches same-shape requests, serves HTTP."""

    async def __init__(self, settings: ServeSettings) -> None:
        self.settings = settings
        self._batch.set_max_batch_size(settings.max_batch_size)
        self._batch.set_batch_wait_timeout_s(settings.batch_wait_timeout_s)
        self.replica_id = serve.get_replica_context().replica_id.unique_id
        # All model work runs on this one thread: off the event loop (so /healthz answers, and
        # HTTP parsing, video decoding and the next batch's gathering go on meanwhile), and on
        # the thread whose OpenMP thread count the engine set (that count is per thread).
        self._model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wfvae-model")
        # Object-storage reads get threads of their own, a bounded pool per allowed prefix: a
        # slow or unreachable store then ties up its own threads only, never the default pool
        # that decodes every request's video, nor the reads of another bucket.
        self.storage_pools = {
            prefix: ThreadPoolExecutor(settings.storage_threads, f"wfvae-storage-{index}")
            for index, prefix in enumerate(settings.allowed_uri_prefixes)
        }
        self.slots = RequestSlots(settings.max_ongoing_requests, settings.retry_after_s)
        self._loading: asyncio.Future[LatentEngine] = asyncio.get_running_loop().run_in_executor(
            self._model_thread, self._load
        )

    def _load(self) -> LatentEngine:
        engine = LatentEngine(self.settings)
        engine.warm_up()
        logger.info("replica %s ready: %s", self.replica_id, engine.encoder.model_id)
        return engine

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_api(self, self.settings)

    async def engine(self) -> LatentEngine:
        """The loaded engine; waits for loading, and a request timing out does not cancel it."""
        return await asyncio.shield(self._loading)

    def load_state(self) -> tuple[bool, str | None]:
        """(ready, why not) for /readyz."""
        if not self._loading.done():
            return False, None
        error = self._loading.exception()
        if error is not None:
            return False, f"{type(error).__name__}: {error}"
        return True, None

    async def submit(self, job: Job) -> JobResult:
        return await self._batch(job)

    @serve.batch(max_batch_size=DEFAULT_MAX_BATCH_SIZE, batch_wait_timeout_s=DEFAULT_BATCH_WAIT_S)
    async def _batch(self, jobs: list[Job]) -> list[JobResult]:
        engine = await self.engine()
        return await asyncio.get_running_loop().run_in_executor(
            self._model_thread, engine.run, jobs
        )

    async def check_health(self) -> None:
        """Serve's health probe: a replica whose model failed to load is replaced."""
        ready, problem = self.load_state()
        if problem is not None:
            raise RuntimeError(f"model failed to load: {problem}")


def _gpus_per_replica(setting: float | str) -> float:
    """'auto': one GPU per replica when the cluster has any, else none."""
    if setting != "auto":
        return float(setting)
    if ray.is_initialized():
        return 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    import torch

    return 1.0 if torch.cuda.is_available() else 0.0


def build_app(args: ServeArgs) -> Application:
    """The service as a Serve application; `args` come from a config's `args:` or from Python."""
    settings = resolve_settings(args)
    return LatentServer.options(
        ray_actor_options={
            "num_cpus": settings.num_cpus,
            "num_gpus": _gpus_per_replica(settings.num_gpus),
        },
        # The work's slots are counted in the replica (admission.py); Serve's holds the probes' too.
        max_ongoing_requests=settings.max_ongoing_requests + PROBE_SLOTS,
        max_queued_requests=settings.max_queued_requests,
        backpressure_config=BackpressureConfig(
            status_code=503, retry_after_s=settings.retry_after_s
        ),
        autoscaling_config=settings.autoscaling_config(),
    ).bind(settings)
