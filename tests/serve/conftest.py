"""The service under test: two real Serve apps on the session's Ray cluster, answering on 127.0.0.1."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from serve_testing import ENCODER, Service, guard_args, main_args, strict_args

from model.latents import ClipEncoder
from serve.settings import ServeArgs

READY_TIMEOUT_S = 120.0


def wait_ready(client: httpx.Client, url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if client.get(f"{url}/readyz").status_code == 200:
            return
        time.sleep(0.2)
    pytest.fail(f"{url}/readyz did not turn ready in {READY_TIMEOUT_S} s")


@pytest.fixture(scope="package")
def serve_http(ray_cluster: None, free_port_factory: Callable[[], int]) -> Iterator[str]:
    """Serve's HTTP proxy on 127.0.0.1 for this package; shut down at its end."""
    from ray import serve

    port = free_port_factory()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="package")
def silent_endpoint() -> Iterator[str]:
    """An HTTP endpoint that accepts connections and never answers: an unreachable store.

    The kernel completes each TCP handshake into the listen backlog; nothing ever reads.
    """
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def _deployed(serve_http: str, args: ServeArgs, name: str, route_prefix: str) -> Iterator[Service]:
    """The app built from `args`, deployed under `route_prefix` and answering."""
    from ray import serve

    from serve.app import build_app

    serve.run(build_app(args), name=name, route_prefix=route_prefix)
    url = serve_http + route_prefix.rstrip("/")
    with httpx.Client(timeout=120.0) as client:
        wait_ready(client, url)
        yield Service(url, client, args)


@pytest.fixture(scope="package")
def service(serve_http: str, s3_endpoint: str, silent_endpoint: str) -> Iterator[Service]:
    yield from _deployed(serve_http, main_args(s3_endpoint, silent_endpoint), "wfvae-main", "/")


@pytest.fixture(scope="package")
def strict_service(serve_http: str) -> Iterator[Service]:
    yield from _deployed(serve_http, strict_args(), "wfvae-strict", "/strict")


@pytest.fixture(scope="package")
def guard_service(serve_http: str) -> Iterator[Service]:
    yield from _deployed(serve_http, guard_args(), "wfvae-guard", "/guard")


@pytest.fixture(scope="package")
def clip_encoder() -> ClipEncoder:
    """The pipeline's encoder in this process: the reference every /encode answer must equal."""
    return ClipEncoder.from_settings(ENCODER)
