"""Local stand-ins the benchmarks start: a free port on loopback, and moto's S3 server on it.

Imported by the benchmark scripts (run as `python benchmarks/NAME.py`, which puts this folder on
`sys.path`); the port picking is the tests' own (`tests/free_ports.py`).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType


def _tests_module(name: str) -> ModuleType:
    """A helper module of tests/, loaded from its file: tests/ itself stays off `sys.path`, where
    its folders named like the packages (tests/model, tests/pipeline) would shadow them."""
    path = Path(__file__).resolve().parents[1] / "tests" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_benchmarks_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


free_port = _tests_module("free_ports").free_port

__all__ = ["free_port", "local_s3", "start_local_serve"]


@contextmanager
def local_s3() -> Iterator[str]:
    """moto's S3 server (real HTTP, the S3 protocol) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def start_local_serve(num_cpus: int) -> int:
    """A local Ray (loopback only) with Serve's HTTP proxy on 127.0.0.1; returns its port."""
    import ray
    from ray import serve

    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}},
    )
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    return port
