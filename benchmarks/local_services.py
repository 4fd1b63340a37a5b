"""Local stand-ins the benchmarks start: a free port on loopback, and moto's S3 server on it.

Imported by the benchmark scripts (run as `python benchmarks/NAME.py`, which puts this folder on
`sys.path`); the port picking is the tests' own (`tests/free_ports.py`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from free_ports import free_port  # noqa: E402

__all__ = ["free_port", "local_s3"]


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
