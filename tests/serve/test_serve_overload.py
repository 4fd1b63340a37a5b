"""Slow clients and slow storage cannot starve the service: stalled uploads time out (408) and hold
at most the work's slots, so /healthz answers at once and the excess is a fast 503 with
Retry-After; reads from an unreachable store time out (504) on their own threads while uploads
go on being encoded."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from serve_testing import (
    GUARD_BODY_IDLE_S,
    GUARD_SLOTS,
    SILENT_PREFIX,
    STORAGE_TIMEOUT_S,
    TOKEN,
    Service,
)

from serve.admission import PROBE_SLOTS
from serve.app import build_app
from serve.settings import ServeArgs

MP4 = "video/mp4"
DECLARED_BYTES = 100_000  # what each stalled upload promises
SENT_BYTES = 1_000  # what it sends before stalling
HEALTH_WITHIN_S = 1.0  # the bound for /healthz while every slot is taken


def test_the_deployment_keeps_slots_for_probes_and_a_bounded_queue() -> None:
    args = ServeArgs(max_ongoing_requests=12, max_queued_requests=5, retry_after_s=3)
    config = build_app(args)._bound_deployment._deployment_config
    assert config.max_ongoing_requests == 12 + PROBE_SLOTS
    assert config.max_queued_requests == 5
    assert (config.backpressure_config.status_code, config.backpressure_config.retry_after_s) == (
        503,
        3,
    )


def stalled_upload(url: str) -> socket.socket:
    """POST /encode declaring DECLARED_BYTES, send SENT_BYTES of them, then nothing more."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    head = (
        f"POST {parts.path}/encode HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: {MP4}\r\n"
        f"Content-Length: {DECLARED_BYTES}\r\n\r\n"
    )
    sock.sendall(head.encode() + b"\0" * SENT_BYTES)
    return sock


def status_line(sock: socket.socket) -> int:
    """The status code of the answer the server sends on `sock`."""
    data = b""
    while b"\r\n" not in data:
        more = sock.recv(4096)
        if not more:
            break
        data += more
    return int(data.split(b" ", 2)[1])


@pytest.mark.slow
def test_stalled_uploads_leave_health_and_a_good_request_through(
    guard_service: Service, sample_videos: dict[str, Path]
) -> None:
    """2x the slots of stalled uploads: /healthz answers within 1 s, a good request is told to
    retry (fast 503, Retry-After) and then completes, and the stalled ones get 408 or 503."""
    video = sample_videos["carphone_distorted"].read_bytes()
    stalled = [stalled_upload(guard_service.url) for _ in range(2 * GUARD_SLOTS)]
    try:
        time.sleep(0.5)  # routed to the replica, each holding a slot or refused
        start = time.perf_counter()
        health = guard_service.client.get(f"{guard_service.url}/healthz", timeout=HEALTH_WITHIN_S)
        assert health.status_code == 200 and time.perf_counter() - start < HEALTH_WITHIN_S

        statuses, refusal_s = [], []
        deadline = time.monotonic() + 10 * GUARD_BODY_IDLE_S
        while time.monotonic() < deadline:
            start = time.perf_counter()
            answer = guard_service.client.post(
                f"{guard_service.url}/encode",
                content=video,
                headers={**guard_service.auth, "Content-Type": MP4},
            )
            statuses.append(answer.status_code)
            if answer.status_code != 503:
                break
            refusal_s.append(time.perf_counter() - start)
            time.sleep(float(answer.headers["retry-after"]))
        assert statuses[0] == 503, statuses  # while the stalled uploads hold every slot
        assert statuses[-1] == 200, statuses
        assert max(refusal_s) < HEALTH_WITHIN_S, refusal_s  # refused at once, not queued
        answers = sorted(status_line(sock) for sock in stalled)
        assert answers.count(408) == GUARD_SLOTS and set(answers) <= {408, 503}, answers
    finally:
        for sock in stalled:
            sock.close()


@pytest.mark.slow
def test_a_stalled_body_is_answered_408_after_the_idle_timeout(guard_service: Service) -> None:
    sock = stalled_upload(guard_service.url)
    try:
        start = time.perf_counter()
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            more = sock.recv(4096)
            if not more:
                break
            data += more
        waited = time.perf_counter() - start
    finally:
        sock.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:200]
    assert json.loads(data.split(b"\r\n\r\n", 1)[1])["error"] == "BodyTimeout"
    assert GUARD_BODY_IDLE_S <= waited < GUARD_BODY_IDLE_S + 5


async def unreachable_reads_and_an_upload(service: Service, video: bytes, reads: int) -> None:
    async with httpx.AsyncClient(base_url=service.url, headers=service.auth, timeout=60) as client:
        finished: dict[str, float] = {}

        async def read(index: int) -> httpx.Response:
            answer = await client.post("/encode", json={"uri": f"{SILENT_PREFIX}{index}.mp4"})
            finished.setdefault("first storage answer", time.perf_counter())
            return answer

        async def upload() -> httpx.Response:
            await asyncio.sleep(0.3)  # after every read has taken its thread
            answer = await client.post("/encode", content=video, headers={"Content-Type": MP4})
            finished["upload"] = time.perf_counter()
            return answer

        start = time.perf_counter()
        *stuck, good = await asyncio.gather(*(read(i) for i in range(reads)), upload())
        assert good.status_code == 200, good.text
        for answer in stuck:
            assert answer.status_code == 504, answer.text
            assert f"within {STORAGE_TIMEOUT_S:g} s" in answer.json()["detail"]
        # The upload did not wait for the store: it finished before any read gave up.
        assert finished["upload"] < finished["first storage answer"], finished
        assert finished["first storage answer"] - start < STORAGE_TIMEOUT_S + 5


@pytest.mark.slow
def test_an_unreachable_store_does_not_hold_up_uploads(
    service: Service, sample_videos: dict[str, Path]
) -> None:
    """8 reads from a store that never answers (more than the default thread pool's 6 threads on
    this machine) while a video is uploaded: the reads 504 after storage_timeout_s, the upload
    is encoded meanwhile."""
    video = sample_videos["carphone_distorted"].read_bytes()
    asyncio.run(unreachable_reads_and_an_upload(service, video, reads=8))
