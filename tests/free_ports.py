"""Free TCP ports on 127.0.0.1 for the servers and Ray nodes the tests start.

Importable from every test package (pytest puts `tests/` on sys.path for its conftest.py).
"""

from __future__ import annotations

import socket

__all__ = ["distinct_ports", "free_port"]


def distinct_ports(count: int) -> list[int]:
    """`count` different free ports on 127.0.0.1 (all held open while picked, so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    return distinct_ports(1)[0]
