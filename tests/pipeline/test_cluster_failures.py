"""Failures on a real multi-node cluster (a head and two workers, 1 CPU each, moto's S3): a node
removed, an encoder actor killed, the driver killed and rerun, a stalled read. Each job ends with
the rows of a clean run, or stops with a distinct exit code naming the stage."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from media_samples import Member, write_tar
from pipeline_cluster import (
    encoder_pids,
    loopback_cluster,
    node_of,
    start_job,
    wait_until,
)
from test_pipeline_resume import assert_same_rows

from jobs.job_cli import JobOptions
from model.storage import StorageSettings
from pipeline.manifest import load_markers
from pipeline.progress import ENCODE, READ, WRITE, StageCounts, stalled_stage
from pipeline.run import run_pipeline

pytestmark = pytest.mark.slow

BUCKET = "cluster-webvid"
SHARDS = 3  # of 2 videos each: enough units that a failure lands mid-job, few for a short test
JOB_TIMEOUT_S = 300
FIRST_COMMIT_TIMEOUT_S = 180
# A quiet machine may commit every unit between one poll and the kill; a loaded one may see the
# first commit only once the encoders are done (they live ~2 s past it): a new job then.
KILL_ATTEMPTS = 3
LEASE_TTL_S = 6  # the tests' lease; the jobs' default is 60 s
MEDIA = ("carphone", "synth_a", "synth_b", "bikes")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with loopback_cluster(workers=2, cpus_per_node=1) as started:
        yield started


@pytest.fixture(scope="module")
def shards(
    media: dict[str, bytes], s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """SHARDS WebDataset shards under s3://cluster-webvid/webvid/; returns that prefix."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("cluster-shards")
    for s in range(SHARDS):
        members = [
            Member(f"{s:03d}{m}", media[MEDIA[(s + m) % len(MEDIA)]], f"shard {s} video {m}")
            for m in range(2)
        ]
        path = write_tar(root / f"{s:05d}.tar", members)
        client.upload_file(str(path), BUCKET, f"webvid/{path.name}")
    return f"s3://{BUCKET}/webvid/"


@pytest.fixture(scope="module")
def clean_output(
    shards: str, s3_endpoint: str, ray_cluster: None, make_settings: Any
) -> tuple[str, StorageSettings]:
    """The same inputs encoded without a failure (on the session's local Ray)."""
    settings = make_settings(
        inputs=[shards],
        output=f"s3://{BUCKET}/out/clean",
        storage={"endpoint_url": s3_endpoint},
    )
    assert run_pipeline(settings).units_processed == SHARDS
    return settings.output, settings.storage


def job_args(cluster: Any, shards: str, output: str, endpoint: str, *extra: str) -> list[str]:
    return [
        "--input", shards, "--output", output, "--ray_address", cluster.address,
        "--storage.endpoint_url", endpoint, "--clips.num_frames", "9", "--clips.height", "64",
        "--clips.width", "64", "--batch_size", "2", "--write_batch_rows", "2",
        "--concurrency", "2", "--progress_bars", "false", "--stall_timeout_s", "120",
        "--lock-ttl-s", str(LEASE_TTL_S),
        "--encoder.dtype", "float32",  # the clean reference's (make_settings); auto is bf16 on AMX
        *extra,
    ]  # fmt: skip


def committed(output: str, storage: StorageSettings) -> int:
    return len(load_markers(output, storage))


def run_until_first_commit(args: list[str], output: str, storage: StorageSettings) -> Any:
    job = start_job(args, {})
    started = wait_until(
        lambda: job.poll() is not None or committed(output, storage) >= 1,
        FIRST_COMMIT_TIMEOUT_S,
        poll_s=0.1,
    )
    assert started and job.poll() is None, "the job ended before a failure could be injected"
    return job


def finish(job: Any) -> tuple[int, str]:
    out, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    return job.returncode, out


def test_an_encoder_actor_killed_mid_job(
    cluster: Any, shards: str, s3_endpoint: str, clean_output: tuple[str, StorageSettings]
) -> None:
    reference, storage = clean_output
    for attempt in range(KILL_ATTEMPTS):
        output = f"s3://{BUCKET}/out/actor-killed-{attempt}"
        job = run_until_first_commit(
            job_args(cluster, shards, output, s3_endpoint), output, storage
        )
        pids = encoder_pids()
        if pids:
            break
        finish(job)  # every unit was encoded before the first commit was seen: again
    assert pids, "no encoder actor found"
    os.kill(pids[0], signal.SIGKILL)
    code, out = finish(job)
    assert code == 0, out[-3000:]
    assert_same_rows(output, reference, storage)


def test_the_driver_killed_then_the_same_command_again(
    cluster: Any, shards: str, s3_endpoint: str, clean_output: tuple[str, StorageSettings]
) -> None:
    reference, storage = clean_output
    for attempt in range(KILL_ATTEMPTS):
        output = f"s3://{BUCKET}/out/driver-killed-{attempt}"
        args = job_args(cluster, shards, output, s3_endpoint, "--json")
        job = run_until_first_commit(args, output, storage)
        job.send_signal(signal.SIGKILL)  # no chance to release its lease
        job.wait(timeout=30)
        killed_at = time.monotonic()
        done = committed(output, storage)
        if done < SHARDS:
            break  # else the last units committed within the poll: kill again, elsewhere
    assert 1 <= done < SHARDS

    code, out = finish(start_job(args, {}))  # at once: the dead driver's lease still stands
    assert code == 75, out[-3000:]
    assert "is held by encode_webvid" in out
    # The lease runs out LEASE_TTL_S after the dead driver's last renewal (the jobs' default: 60 s).
    code, out = 75, ""
    while code == 75 and time.monotonic() - killed_at < LEASE_TTL_S + 60:
        time.sleep(1)
        code, out = finish(start_job(args, {}))
    assert code == 0, out[-3000:]
    assert time.monotonic() - killed_at < LEASE_TTL_S + 60
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["units_skipped"] >= done
    assert summary["units_processed"] + summary["units_skipped"] == SHARDS
    assert_same_rows(output, reference, storage)
    assert JobOptions().lock_ttl_s == 60  # without --lock-ttl-s, a dead driver blocks a minute


def test_a_stalled_read_stops_the_job_with_exit_4_naming_the_stage(
    cluster: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    stuck = tmp_path / "00000.tar"
    os.mkfifo(stuck)  # opening it for reading blocks until a writer comes: none will
    args = job_args(cluster, str(stuck), f"s3://{BUCKET}/out/stalled", s3_endpoint)
    args[args.index("--stall_timeout_s") + 1] = "5"
    started = time.monotonic()
    code, out = finish(start_job(args, {}))
    assert code == 4, out[-3000:]
    assert "stage read_and_decode stalled: no block finished at any stage for" in out
    assert "units read 0/1" in out
    assert time.monotonic() - started < 120


def test_a_worker_node_removed_mid_job(
    cluster: Any, shards: str, s3_endpoint: str, clean_output: tuple[str, StorageSettings]
) -> None:
    reference, storage = clean_output
    for attempt in range(KILL_ATTEMPTS):
        output = f"s3://{BUCKET}/out/node-removed-{attempt}"
        job = run_until_first_commit(
            job_args(cluster, shards, output, s3_endpoint), output, storage
        )
        # the node of an encoder actor (busy: the job is mid-way); never the head, which holds the GCS
        victims = [node_of(cluster, pid) for pid in encoder_pids()]
        victim = next((n for n in victims if n is not None and n is not cluster.head_node), None)
        if victim is not None:
            break
        finish(job)  # every unit was encoded before the first commit was seen: again
    assert victim is not None, "no encoder actor on a worker node"
    cluster.remove_node(victim, allow_graceful=False)  # last test: the cluster stays smaller
    code, out = finish(job)
    assert code == 0, out[-3000:]  # restarted encoders took the CPUs left: reads hold none
    assert f"units {SHARDS} processed" in out
    assert_same_rows(output, reference, storage)


@pytest.mark.parametrize(
    ("counts", "stage"),
    [
        (StageCounts(units_read=3, rows_read=9, rows_encoded=9, rows_written=5), WRITE),
        (StageCounts(units_read=3, rows_read=9, rows_encoded=4, rows_written=4), ENCODE),
        (StageCounts(units_read=1, rows_read=4, rows_encoded=4, rows_written=4), READ),
    ],
)
def test_the_stalled_stage_is_the_one_holding_the_work(counts: StageCounts, stage: str) -> None:
    assert stalled_stage(counts, units=3) == stage
