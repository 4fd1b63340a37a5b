"""A request's deadline: it expires, and a cancellation that lands as the work completes is kept."""

from __future__ import annotations

import asyncio

import pytest

from serve.admission import within
from serve.errors import RequestTimeout


async def _cancelled_as_it_completes(wait) -> str:  # noqa: ANN001
    """Cancel a task in the same loop iteration as the work it awaits completes."""
    work = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(wait(work))
    await asyncio.sleep(0)  # the task now awaits `work`
    work.set_result("completed")
    task.cancel()
    try:
        return await task
    except asyncio.CancelledError:
        return "cancelled"


def test_a_cancellation_as_the_work_completes_is_not_lost() -> None:
    # What let a timed-out /encode run to the end: a deadline on reading the body swallowed the
    # request timeout's cancellation (asyncio.wait_for before Python 3.12 returns the result).
    assert (
        asyncio.run(_cancelled_as_it_completes(lambda work: within(10, work, RequestTimeout)))
        == "cancelled"
    )


def test_the_deadline_expires() -> None:
    with pytest.raises(RequestTimeout, match="longer than 0.01 s"):
        asyncio.run(within(0.01, asyncio.sleep(5), RequestTimeout))
    assert asyncio.run(within(5, asyncio.sleep(0, result="in time"), RequestTimeout)) == "in time"
