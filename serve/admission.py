"""Who a replica lets in, and for how long: the bearer token, the request slots, the deadlines.

Request slots: /encode and /decode take at most `limit` at once, the rest are refused at once
(503 with Retry-After), so health probes always find the replica free to answer. Serve counts
every request a replica holds against the deployment's `max_ongoing_requests`, health probes and
uploads still in flight included. A client that opens that many uploads and stalls would
otherwise leave no room for /healthz (and a load balancer would then take the replica out). So
the deployment is given `PROBE_SLOTS` more than the work may use: work beyond `limit` is
answered 503 before its body is read, each such refusal holds a Serve slot for milliseconds, and
the spare slots stay free for the health, readiness and model-info routes.

Deadlines: `within` is the one timeout of the service (a request, a body that stalls, a slow
object store), and it never swallows the caller's own cancellation. `asyncio.wait_for` before
Python 3.12 can return its result instead of raising when it is itself cancelled just as its
work completes: a request timeout that cancelled `/encode` while it read its body then let the
request run on to the end. `asyncio.timeout` (3.11+) cannot lose a cancellation that way.
"""

from __future__ import annotations

import asyncio
import hmac
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from fastapi import Request
from pydantic import SecretStr

from .errors import Overloaded, RequestError, Unauthorized

__all__ = ["PROBE_SLOTS", "RequestSlots", "bearer_auth", "within"]

T = TypeVar("T")
BEARER_PREFIX = "bearer "
# Serve slots kept beyond the work's own for /healthz, /readyz, /v1/model and the instants in
# which an excess request is being refused.
PROBE_SLOTS = 8


def bearer_auth(token: SecretStr | None) -> Callable[[Request], None]:
    """A dependency that raises `Unauthorized` unless the request carries `token`; a no-op if None
    (the comparison takes constant time)."""
    expected = token.get_secret_value().encode() if token is not None else None

    def require_token(request: Request) -> None:
        if expected is None:
            return
        header = request.headers.get("authorization", "")
        if not header.lower().startswith(BEARER_PREFIX):
            raise Unauthorized()
        given = header[len(BEARER_PREFIX) :].strip().encode()
        if not hmac.compare_digest(given, expected):
            raise Unauthorized()

    return require_token


class RequestSlots:
    """At most `limit` requests hold a slot; one more is refused with `Overloaded`.

    The count needs no lock: every route runs on the replica's one event loop, and the check
    and the increment happen with no `await` between them.
    """

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_use = 0

    @contextmanager
    def hold(self) -> Iterator[None]:
        if self.in_use >= self.limit:
            raise Overloaded(self.limit, self.retry_after_s)
        self.in_use += 1
        try:
            yield
        finally:
            self.in_use -= 1


async def within(seconds: float, work: Awaitable[T], expired: Callable[[float], RequestError]) -> T:
    """`await work`, or raise `expired(seconds)` (RequestTimeout, BodyTimeout, StorageTimeout)
    once `seconds` have passed."""
    try:
        if sys.version_info >= (3, 11):
            async with asyncio.timeout(seconds):
                return await work
        return await asyncio.wait_for(work, timeout=seconds)  # pragma: no cover (Python 3.10)
    except asyncio.TimeoutError as error:
        raise expired(seconds) from error
