"""Pipeline fixtures: a small corpus of real and corrupt videos, on local disk and on S3 and GCS servers."""

from __future__ import annotations

import csv
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from media_samples import Member, write_tar

BUCKET = "videos"

# Ray workers inherit the environment of the process that starts the cluster, and the shared
# `ray_cluster` fixture may start before `s3_endpoint` sets moto's dummy credentials: set them
# while conftests load, before any fixture runs.
for _name, _value in (
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
):
    os.environ.setdefault(_name, _value)

# What each corpus sample must become with the test clip settings (9 frames, 64x64).
OK = "ok"


@dataclass(frozen=True)
class Corpus:
    """The test inputs on local disk, and what each sample must come out as."""

    root: Path
    expected: dict[
        tuple[str, str], str
    ]  # (source file name, member key) -> "ok" or an error reason
    media: dict[str, bytes] = field(repr=False)


@pytest.fixture(scope="session")
def corpus(media: dict[str, bytes], tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Two WebDataset shards, loose mp4 files with sidecar captions, and a WebVid-style CSV."""
    root = tmp_path_factory.mktemp("corpus")
    (root / "shards").mkdir()
    (root / "files").mkdir()
    (root / "webvid" / "videos").mkdir(parents=True)
    expected: dict[tuple[str, str], str] = {}

    def shard(name: str, members: list[tuple[str, str, str]]) -> None:
        write_tar(root / "shards" / name, [Member(k, media[m], caption=c) for k, m, c in members])
        for key, medium, _ in members:
            expected[(name, key)] = OUTCOME[medium]

    shard(
        "shard-00000.tar",
        [
            ("000000", "carphone", "a man on a phone in a car"),
            ("000001", "bikes", "cyclists on a road"),
            ("000002", "truncated", "half a file"),
            ("000003", "synth_a", "a moving gradient"),
        ],
    )
    shard(
        "shard-00001.tar",
        [
            ("000100", "bunny", "a big rabbit"),
            ("000101", "zero_bytes", "nothing"),
            ("000102", "text", "words"),
            ("000103", "three_frames", "too short"),
        ],
    )
    for name, medium, caption in (
        ("clip_a", "carphone_distorted", "a noisy phone call"),
        ("clip_b", "synth_b", None),
        ("short", "three_frames", None),
    ):
        (root / "files" / f"{name}.mp4").write_bytes(media[medium])
        if caption:
            (root / "files" / f"{name}.txt").write_text(caption)
        expected[(f"{name}.mp4", name)] = OUTCOME[medium]
    with (root / "webvid" / "results_2M_val.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["videoid", "name", "page_dir", "duration", "contentUrl"])
        for videoid, medium, caption in (("1001", "synth_c", "a square"), ("1002", "text", "bad")):
            (root / "webvid" / "videos" / f"{videoid}.mp4").write_bytes(media[medium])
            writer.writerow([videoid, caption, "dir", "PT00H00M01S", f"videos/{videoid}.mp4"])
            expected[(f"{videoid}.mp4", videoid)] = OUTCOME[medium]
    return Corpus(root=root, expected=expected, media=media)


OUTCOME = {
    "carphone": OK,
    "carphone_distorted": OK,
    "bikes": OK,
    "bunny": OK,
    "synth_a": OK,
    "synth_b": OK,
    "synth_c": OK,
    "three_frames": "too_short",
    "truncated": "unreadable",
    "zero_bytes": "empty",
    "text": "unreadable",
}


@pytest.fixture(scope="session")
def s3_corpus(corpus: Corpus, s3_endpoint: str) -> str:
    """The corpus uploaded to `s3://videos/` on the moto server; returns the bucket URI."""
    import boto3

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(corpus.root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, path.relative_to(corpus.root).as_posix())
    return f"s3://{BUCKET}"


@pytest.fixture(scope="session")
def gcs_corpus(corpus: Corpus, gcs_endpoint: str) -> str:
    """The corpus uploaded to `gs://videos/` on the GCS emulator (over its JSON API, by gcsfs)."""
    from model.storage import StorageSettings, open_fs

    fs, bucket = open_fs(f"gs://{BUCKET}", StorageSettings(gcs_endpoint_url=gcs_endpoint))
    fs.mkdir(bucket)  # a bucket, at the top level
    for path in sorted(corpus.root.rglob("*")):
        if path.is_file():
            fs.put_file(str(path), f"{bucket}/{path.relative_to(corpus.root).as_posix()}")
    return f"gs://{BUCKET}"


@pytest.fixture(scope="session")
def make_settings() -> Callable[..., Any]:
    """PipelineSettings with the tests' tiny clip geometry; keyword overrides on top."""
    from pipeline.settings import PipelineSettings

    def build(**overrides: Any) -> PipelineSettings:
        values: dict[str, Any] = {
            "clips": {"num_frames": 9, "height": 64, "width": 64},
            # float32 everywhere: `auto` is bfloat16 on CPUs with AMX, and the runs are compared
            # with float32 encodes in the test process.
            "encoder": {"dtype": "float32"},
            "batch_size": 4,
            "progress_bars": False,
            "files_per_unit": 2,
        }
        values.update({**overrides, "encoder": {**values["encoder"], **overrides.get("encoder", {})}})
        return PipelineSettings(**values)

    return build


@pytest.fixture(scope="session")
def s3_inputs(s3_corpus: str) -> list[str]:
    """The S3 corpus as pipeline inputs: a brace range, a glob, and the WebVid table."""
    return [
        f"{s3_corpus}/shards/shard-{{00000..00001}}.tar",
        f"{s3_corpus}/files/*.mp4",
        f"{s3_corpus}/webvid/results_2M_val.csv",
    ]


@pytest.fixture(scope="session")
def reference_run(
    s3_endpoint: str, ray_cluster: None, s3_inputs: list[str], make_settings: Callable[..., Any]
) -> Iterator[tuple[Any, Any]]:
    """One uninterrupted run over the S3 corpus: (settings, summary)."""
    from pipeline.run import run_pipeline

    settings = make_settings(
        inputs=s3_inputs,
        output=f"s3://{BUCKET}/out/reference",
        storage={"endpoint_url": s3_endpoint},
    )
    yield settings, run_pipeline(settings)
