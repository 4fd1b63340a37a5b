"""A real Ray head node started with `ray start` for the job tests, and stopped without touching others."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from free_ports import distinct_ports

RAY = str(Path(sys.executable).with_name("ray"))
START_TIMEOUT_S = 240


@dataclass
class RayHead:
    """A head node: its GCS and dashboard addresses, and the environment its clients need."""

    gcs_address: str
    dashboard_url: str
    temp_dir: str
    env: dict[str, str] = field(repr=False)


def start_head(extra_env: dict[str, str], attempts: int = 2) -> RayHead:
    """`ray start --head` on 127.0.0.1 with its own temp dir, ports and auth token.

    A port picked free can be taken by another process before Ray binds it (other clusters run
    on this host): a failed start is cleaned up and tried again on new ports."""
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
    for attempt in range(attempts):
        temp_dir = tempfile.mkdtemp(prefix="rayjobs-", dir="/tmp")  # short: socket paths are capped
        gcs, dashboard, *others = distinct_ports(9)
        flags = (  # every port that would otherwise default to a number other clusters use
            "--ray-client-server-port", "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port",
            "--node-manager-port", "--object-manager-port",
        )  # fmt: skip
        command = [
            RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={gcs}",
            f"--dashboard-port={dashboard}", "--dashboard-host=127.0.0.1",
            "--include-dashboard=true", f"--temp-dir={temp_dir}", "--num-cpus=2",
            "--disable-usage-stats", *(f"{f}={p}" for f, p in zip(flags, others, strict=True)),
        ]  # fmt: skip
        head = RayHead(f"127.0.0.1:{gcs}", f"http://127.0.0.1:{dashboard}", temp_dir, env)
        done = subprocess.run(
            command, env=env, timeout=START_TIMEOUT_S, capture_output=True, text=True
        )
        if done.returncode == 0:
            return head
        stop_head(head)
        if attempt == attempts - 1:
            raise RuntimeError(f"ray start failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    raise AssertionError("unreachable")


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
