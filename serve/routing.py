"""What every route shares: the request timeout, the answer's timing headers, request-body docs."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Mapping, Sequence
from concurrent.futures import Executor
from importlib import metadata as package_metadata
from typing import Protocol, TypeVar

from fastapi.responses import Response

from .admission import RequestSlots
from .deadlines import within
from .engine import Job, JobResult, LatentEngine
from .errors import RequestTimeout

__all__ = ["Backend", "Stopwatch", "body_doc", "service_version", "with_timeout", "with_timings"]

T = TypeVar("T")
PACKAGE = "wfvae-latents"


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


async def with_timeout(work: Awaitable[T], seconds: float) -> T:
    """`work`, or a RequestTimeout (504) once it has run `seconds`."""
    try:
        return await within(seconds, work)
    except asyncio.TimeoutError as error:
        raise RequestTimeout(seconds) from error


def with_timings(
    response: Response, results: Sequence[JobResult], laps: dict[str, float], replica_id: str
) -> Response:
    """Batch size, replica and a Server-Timing header (ms) on an /encode or /decode answer."""
    response.headers["X-Batch-Size"] = str(max(r.batch_size for r in results))
    response.headers["X-Replica-Id"] = replica_id
    laps["model"] = max(r.seconds for r in results)
    response.headers["Server-Timing"] = ", ".join(f"{name};dur={1000 * s:.1f}" for name, s in laps.items())
    return response


def body_doc(types: Sequence[str], description: str) -> dict[str, object]:
    """An OpenAPI request body of raw bytes in any of `types`."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {"description": description, "required": True, "content": {t: binary for t in types}}
