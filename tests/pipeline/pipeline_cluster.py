"""A multi-node Ray cluster on loopback (`ray.cluster_utils.Cluster`) for the failure tests, and its job drivers.

Every node gets its own free ports, so clusters of other processes on this host are never met,
and the cluster's address is not published in /tmp/ray (where a bare `ray.init()` elsewhere on
the host would find it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from free_ports import distinct_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
ENCODE_ACTOR_TITLE = b"EncodeStage"  # Ray's process title for the map_batches actor names the class
NODE_PORTS = (
    "node_manager_port", "object_manager_port", "ray_client_server_port",
    "dashboard_agent_listen_port", "metrics_agent_port", "metrics_export_port",
    "runtime_env_agent_port",
)  # fmt: skip


def _node_args(num_cpus: int, head: bool) -> dict[str, Any]:
    ports = distinct_ports(len(NODE_PORTS) + 1)
    args: dict[str, Any] = dict(zip(NODE_PORTS, ports[1:], strict=True))
    if not head:
        args.pop("ray_client_server_port")
    args.update(
        num_cpus=num_cpus,
        node_ip_address="127.0.0.1",
        include_dashboard=False,
        object_store_memory=200 * 2**20,
    )
    if head:
        args["gcs_server_port"] = ports[0]
    return args


@contextmanager
def loopback_cluster(workers: int, cpus_per_node: int = 1) -> Iterator[Any]:
    """A head and `workers` worker nodes, `cpus_per_node` CPUs each; removed at exit."""
    import ray._private.utils
    from ray.cluster_utils import Cluster

    publish = ray._private.utils.write_ray_address
    ray._private.utils.write_ray_address = lambda *a, **k: None  # keep it to this test
    try:
        cluster = Cluster(initialize_head=True, head_node_args=_node_args(cpus_per_node, True))
        for _ in range(workers):
            add_worker(cluster, cpus_per_node)
    finally:
        ray._private.utils.write_ray_address = publish
    try:
        yield cluster
    finally:
        cluster.shutdown()


def add_worker(cluster: Any, cpus: int = 1) -> Any:
    node = cluster.add_node(**_node_args(cpus, False))
    cluster.wait_for_nodes()
    return node


def _parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def encoder_pids() -> list[int]:
    """PIDs of live encoder actors (by their process title)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if ENCODE_ACTOR_TITLE in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return [p for p in pids if p != os.getpid()]


def node_of(cluster: Any, pid: int) -> Any | None:
    """The cluster node whose raylet started process `pid` (a worker is its raylet's child)."""
    raylets = {}
    for node in [cluster.head_node, *cluster.worker_nodes]:
        for info in node.all_processes.get("raylet", []):
            raylets[info.process.pid] = node
    try:
        while pid > 1:
            if pid in raylets:
                return raylets[pid]
            pid = _parent(pid)
    except (OSError, ValueError, IndexError):
        return None
    return None


def start_job(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`python jobs/encode_webvid.py ARGS` as its own driver process."""
    return subprocess.Popen(
        [sys.executable, "jobs/encode_webvid.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(condition: Any, timeout_s: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return False
