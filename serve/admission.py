"""The replica's request slots: /encode and /decode take at most `limit` at once, the rest are
refused at once (503 with Retry-After), so health probes always find the replica free to answer.

Serve counts every request a replica holds against the deployment's `max_ongoing_requests`,
health probes and uploads still in flight included. A client that opens that many uploads and
stalls would otherwise leave no room for /healthz (and a load balancer would then take the
replica out). So the deployment is given `PROBE_SLOTS` more than the work may use: work beyond
`limit` is answered 503 before its body is read, each such refusal holds a Serve slot for
milliseconds, and the spare slots stay free for the health, readiness and model-info routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import Overloaded

__all__ = ["PROBE_SLOTS", "RequestSlots"]

# Serve slots kept beyond the work's own for /healthz, /readyz, /v1/model and the instants in
# which an excess request is being refused.
PROBE_SLOTS = 8


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
