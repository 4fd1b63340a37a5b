"""A real Ray head node started with `ray start` for the job tests, and stopped without touching others."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 240


@dataclass
class RayHead:
    """A head node: its GCS and dashboard addresses, and the environment its clients need."""

    gcs_address: str
    dashboard_url: str
    temp_dir: str
    env: dict[str, str] = field(repr=False)


def start_head(free_port: Callable[[], int], extra_env: dict[str, str]) -> RayHead:
    """`ray start --head` on 127.0.0.1 with its own temp dir, ports and auth token."""
    temp_dir = tempfile.mkdtemp(prefix="rayjobs-", dir="/tmp")  # short: socket paths are capped
    env = {
        **os.environ,
        **extra_env,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        # Token auth as `ray start` enables it by default, with this test's own token in the
        # environment rather than in ~/.ray/auth_token, which other clusters on the host share.
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(16),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
    }
    gcs, dashboard = free_port(), free_port()
    ports = {  # every port that would otherwise default to a fixed number other clusters use
        "--ray-client-server-port": free_port(),
        "--dashboard-agent-listen-port": free_port(),
        "--dashboard-agent-grpc-port": free_port(),
        "--runtime-env-agent-port": free_port(),
        "--metrics-export-port": free_port(),
        "--node-manager-port": free_port(),
        "--object-manager-port": free_port(),
    }
    command = [
        RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
        f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1", "--include-dashboard=true",
        f"--temp-dir={temp_dir}", "--num-cpus=2", "--disable-usage-stats",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]  # fmt: skip
    subprocess.run(command, env=env, check=True, timeout=START_TIMEOUT_S, capture_output=True)
    return RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", temp_dir, env)


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return parents


def _pids_under(temp_dir: str) -> list[int]:
    """This cluster's processes: those naming its temp dir (raylet, GCS, dashboard...) and their
    descendants (workers, agents and job drivers, which rename themselves)."""
    marker = temp_dir.encode()
    roots = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "cmdline").read_bytes():
                roots.add(int(entry.name))
        except OSError:
            continue
    parents = _parents()
    found, frontier = set(roots), set(roots)
    while frontier:
        frontier = {pid for pid, parent in parents.items() if parent in frontier} - found
        found |= frontier
    found.discard(os.getpid())
    return sorted(found)


def stop_head(head: RayHead, grace_s: float = 10.0) -> None:
    """Stop this cluster only: signal its processes by id (SIGTERM, then SIGKILL what is left).

    The set is taken before any signal, since children of a stopped raylet get a new parent."""
    pids = set(_pids_under(head.temp_dir))
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids |= set(_pids_under(head.temp_dir))
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace_s
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)}
            time.sleep(0.2)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
