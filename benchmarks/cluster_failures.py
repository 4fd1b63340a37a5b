"""What a failure costs a job on a multi-node cluster: the same job clean, with a worker node
removed, and with an encoder actor killed, side by side in one run.

A head and two worker nodes on loopback (`ray.cluster_utils.Cluster`, 1 CPU each), moto's S3,
WebDataset shards of short synthetic videos, 2 encoder actors (the bundled model). Each job is
`jobs/encode_webvid.py` as its own driver; the failure is injected once the first unit is
committed. A first clean job warms the cluster up; the node removal comes last (the cluster
stays smaller).

    python benchmarks/cluster_failures.py [--shards 8]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_name, _value)
REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests" / "pipeline"))  # the tests' cluster and media helpers
from local_services import local_s3  # noqa: E402

BUCKET = "failure-bench"
FIRST_COMMIT_TIMEOUT_S = 300


def upload_shards(client: object, shards: int) -> str:
    from pipeline_media import Member, synthetic, write_tar

    videos = [synthetic(20, 96, 64, seed=s) for s in range(4)]
    with tempfile.TemporaryDirectory() as tmp:
        for s in range(shards):
            members = [Member(f"{s:03d}{m}", videos[(s + m) % 4], f"video {m}") for m in range(2)]
            path = write_tar(Path(tmp) / f"{s:05d}.tar", members)
            client.upload_file(str(path), BUCKET, f"webvid/{path.name}")  # type: ignore[attr-defined]
    return f"s3://{BUCKET}/webvid/"


def run(cluster: object, args: list[str], failure: str, output: str, storage: object) -> str:
    """One job; `failure` is none, actor or node. Returns its table row."""
    import signal

    from pipeline_cluster import encoder_pids, node_of, start_job, wait_until

    from pipeline.manifest import load_markers

    start = time.monotonic()
    job = start_job(args, {})
    injected = "-"
    if failure != "none":
        wait_until(
            lambda: job.poll() is not None or bool(load_markers(output, storage)),  # type: ignore[arg-type]
            FIRST_COMMIT_TIMEOUT_S,
            poll_s=0.1,
        )
        pids = encoder_pids()
        if failure == "actor" and pids:
            os.kill(pids[0], signal.SIGKILL)
            injected = f"{time.monotonic() - start:.1f}"
        elif failure == "node":
            nodes = [node_of(cluster, pid) for pid in pids]
            head = cluster.head_node  # type: ignore[attr-defined]
            victim = next((n for n in nodes if n is not None and n is not head), None)
            if victim is not None:
                cluster.remove_node(victim, allow_graceful=False)  # type: ignore[attr-defined]
                injected = f"{time.monotonic() - start:.1f}"
    out, _ = job.communicate(timeout=900)
    seconds = time.monotonic() - start
    if job.returncode != 0:
        logging.warning("the %s job exited %d:\n%s", failure, job.returncode, out[-4000:])
    done = len(load_markers(output, storage))  # type: ignore[arg-type]
    return f"| {failure} | {injected} | {job.returncode} | {done} | {seconds:.1f} |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument(
        "--failures", default="none,none,actor,node", help="jobs in order: none, actor, node"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import boto3
    from pipeline_cluster import loopback_cluster

    from model.storage import StorageSettings

    rows = []
    with local_s3() as endpoint:
        storage = StorageSettings(endpoint_url=endpoint)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        shards = upload_shards(client, args.shards)
        with loopback_cluster(workers=2, cpus_per_node=1) as cluster:
            # the first job on a fresh cluster pays cold starts (worker processes, imports)
            for round_, failure in enumerate(args.failures.split(",")):
                output = f"s3://{BUCKET}/out/{round_}-{failure}"
                job_args = [
                    "--input", shards, "--output", output, "--ray_address", cluster.address,
                    "--storage.endpoint_url", endpoint, "--clips.num_frames", "9",
                    "--clips.height", "64", "--clips.width", "64", "--batch_size", "2",
                    "--write_batch_rows", "2", "--concurrency", "2", "--progress_bars", "false",
                ]  # fmt: skip
                row = run(cluster, job_args, failure, output, storage)
                rows.append(row.replace("| none |", "| none (first job, cold) |", round_ == 0))
    print(f"{args.shards} shards of 2 videos, head + 2 workers (1 CPU each), 2 encoders")
    print("| failure | injected at s | exit | units committed | job s |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
