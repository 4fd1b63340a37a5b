"""A deadline on an await that never swallows the caller's own cancellation.

`asyncio.wait_for` before Python 3.12 can return its result instead of raising when it is itself
cancelled just as its work completes: a request timeout that cancelled `/encode` while it read its
body then let the request run on to the end. `asyncio.timeout` (3.11+) cannot lose a
cancellation that way.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["within"]

T = TypeVar("T")


async def within(seconds: float, work: Awaitable[T]) -> T:
    """`await work`, or TimeoutError (`asyncio.TimeoutError`) once `seconds` have passed."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await work
    return await asyncio.wait_for(work, timeout=seconds)  # pragma: no cover (Python 3.10)
