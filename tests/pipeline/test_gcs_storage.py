"""gs:// end to end: a GCS JSON API endpoint over HTTP on 127.0.0.1 (gcp-storage-emulator), gcsfs.

Inputs are expanded and shards streamed from gs://, Parquet files and the manifest written to it
by a real Ray cluster; re-runs skip what is done and redo a shard rewritten in place.
"""

from __future__ import annotations

import io
import json
import math
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_pipeline_run import (
    PARITY_TOLERANCE,
    largest_difference_from_in_process,
    read_prefix,
    source_name,
)

from model.latents import ClipEncoder
from model.storage import StorageSettings, open_fs
from pipeline.manifest import INDEX_FILE, load_markers
from pipeline.run import run_pipeline
from pipeline.settings import load_settings
from pipeline.sources import TAR_READ_BLOCK, Sample, iter_tar_samples, list_sources
from pipeline.storage import atomic_write, expand_inputs, file_version

SHARDS = ("shard-00000.tar", "shard-00001.tar")
FILES = ("clip_a.mp4", "clip_b.mp4", "short.mp4")
MEDIUM = {
    "000000": "carphone", "000001": "bikes", "000003": "synth_a", "000100": "bunny",
    "clip_a": "carphone_distorted", "clip_b": "synth_b",
}  # fmt: skip


@pytest.fixture(scope="module")
def storage(gcs_endpoint: str) -> StorageSettings:
    return StorageSettings(gcs_endpoint_url=gcs_endpoint)


@pytest.fixture(scope="module")
def gcs_run(
    gcs_corpus: str, storage: StorageSettings, ray_cluster: None, make_settings: Any
) -> tuple[Any, Any]:
    """One run from gs:// shards (a brace range) and loose files (a glob) to a gs:// prefix."""
    settings = make_settings(
        inputs=[f"{gcs_corpus}/shards/shard-{{00000..00001}}.tar", f"{gcs_corpus}/files/*.mp4"],
        output=f"{gcs_corpus}/out/run",
        storage=storage.model_dump(),
    )
    return settings, run_pipeline(settings)


def test_globs_braces_list_files_and_generations(gcs_corpus: str, storage: StorageSettings) -> None:
    atomic_write(
        f"{gcs_corpus}/lists/inputs.txt",
        b"# shards\ngs://videos/shards/shard-00001.tar\n\n",
        storage,
    )
    found = expand_inputs(
        [f"{gcs_corpus}/shards/shard-{{00000..00000}}.tar", f"{gcs_corpus}/files/*.mp4"],
        storage,
        input_lists=[f"{gcs_corpus}/lists/inputs.txt"],
    )
    assert found == [
        "gs://videos/shards/shard-00000.tar",
        *(f"gs://videos/files/{name}" for name in FILES),
        "gs://videos/shards/shard-00001.tar",
    ]
    fs, path = open_fs(f"{gcs_corpus}/files/clip_a.mp4", storage)
    info = fs.info(path)
    assert file_version(info) == str(info["generation"]) and info["generation"]
    _, items = list_sources([f"{gcs_corpus}/files/clip_a.mp4"], storage)
    assert items[0].caption == "a noisy phone call"  # the sidecar .txt, found by listing


def test_large_tar_streams_in_block_sized_ranged_reads(
    gcs_corpus: str, storage: StorageSettings, corpus: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A 26 MB shard, written through one resumable upload, read back in 8 MB ranges."""
    rng = np.random.default_rng(0)
    blobs = {
        f"big{i}": rng.integers(0, 256, 8 * 2**20 + 1000 * i, np.uint8).tobytes() for i in range(3)
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for key, data in [*blobs.items(), ("small", corpus.media["bikes"])]:
            info = tarfile.TarInfo(f"{key}.mp4")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    fs, path = open_fs(f"{gcs_corpus}/large/big-00000.tar", storage)
    with caplog.at_level("INFO", logger="gcp_storage_emulator.server"):
        with fs.open(path, "wb", block_size=TAR_READ_BLOCK) as handle:
            view = memoryview(buffer.getvalue())
            for start in range(0, len(view), 3 * 2**20):
                handle.write(view[start : start + 3 * 2**20])
        parts = [m for m in caplog.messages if "uploadType=resumable&upload_id=" in m]
        assert len(parts) >= len(view) // TAR_READ_BLOCK  # one upload in 8 MB parts (3)
        caplog.clear()
        ((unit,), _) = list_sources([f"{gcs_corpus}/large/big-00000.tar"], storage)
        samples = list(iter_tar_samples(unit, storage))
    assert all(isinstance(s, Sample) for s in samples)
    assert {s.member_key: s.video for s in samples} == {**blobs, "small": corpus.media["bikes"]}
    reads = [
        r for r in caplog.messages if '"GET ' in r and "big-00000.tar" in r and "alt=media" in r
    ]
    blocks = math.ceil(len(view) / TAR_READ_BLOCK)  # 4
    assert blocks <= len(reads) <= blocks + 1, reads  # not one request per 10 KB tarfile read
    assert all('" 206 ' in r for r in reads)  # ranges (Partial Content), not the whole object


def test_run_accounts_for_every_input_and_matches_in_process_encoding(
    gcs_run: tuple[Any, Any], corpus: Any
) -> None:
    settings, summary = gcs_run
    latents, metas = read_prefix(settings.output, "latents", settings.storage)
    errors, _ = read_prefix(settings.output, "errors", settings.storage)
    outcome = {(source_name(r), r["member_key"]): "ok" for r in latents}
    outcome.update({(source_name(r), r["member_key"]): r["reason"] for r in errors})
    expected = {k: v for k, v in corpus.expected.items() if k[0] in SHARDS + FILES}
    assert outcome == expected
    assert (summary.units_processed, summary.samples) == (4, len(expected))
    assert summary.clips == len(latents) == sum(v == "ok" for v in expected.values())
    assert {r["source_uri"].split("://")[0] for r in latents} == {"gs"}
    fs, folder = open_fs(f"{settings.output}/latents", settings.storage)
    written = {n.rsplit("/", 1)[-1] for n in fs.ls(folder, detail=False)}
    markers = load_markers(settings.output, settings.storage)
    assert len(markers) == 4  # every part file is listed by its unit's marker, and no other
    assert written == {name for m in markers.values() for name in m.files("latents")}
    encoder = ClipEncoder(dtype="float32", device="cpu")
    media = {key: corpus.media[name] for key, name in MEDIUM.items()}
    worst = largest_difference_from_in_process(latents, media, settings.clips, encoder)
    assert worst <= PARITY_TOLERANCE, worst
    assert metas[0]["model_id"] == encoder.model_id
    fs, path = open_fs(f"{settings.output}/latent_stats.json", settings.storage)
    assert json.loads(fs.cat_file(path))["units"] == 4


def test_rerun_skips_finished_units_and_redoes_a_rewritten_shard(
    gcs_run: tuple[Any, Any], corpus: Any
) -> None:
    settings, _ = gcs_run
    fs, out = open_fs(settings.output, settings.storage)

    def generations() -> dict[str, str]:
        return {
            p: str(info["generation"])
            for p, info in fs.find(out, detail=True).items()
            if ("/_manifest/" in p or "/latents/" in p) and not p.endswith(INDEX_FILE)
        }

    before = generations()
    again = run_pipeline(settings)
    assert (again.units_processed, again.units_skipped, again.clips) == (0, 4, 0)
    assert generations() == before  # nothing rewritten

    shard = Path(corpus.root, "shards", SHARDS[1])
    sfs, spath = open_fs(f"gs://videos/shards/{SHARDS[1]}", settings.storage)
    sfs.pipe_file(spath, shard.read_bytes())  # same bytes, new generation: a new version
    redone = run_pipeline(settings)
    assert (redone.units_processed, redone.units_skipped) == (1, 3)
    assert redone.samples == 4 and redone.errors == 3
    after = generations()
    changed = {p for p in before if after.get(p) != before[p]}
    assert changed and all("shard-00001" in p for p in changed)
    assert len(load_markers(settings.output, settings.storage)) == 4


def test_credentials_follow_the_standard_google_environment(
    tmp_path: Path, gcs_endpoint: str, gcs_corpus: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = tmp_path / "adc.json"
    key.write_text(
        json.dumps(
            {
                "type": "authorized_user",
                "client_id": "wfvae-test.apps.googleusercontent.com",
                "client_secret": "not-a-secret",
                "refresh_token": "not-a-token",
                "quota_project_id": "wfvae-test",
            }
        )
    )
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    fresh = {"skip_instance_cache": True}
    google, path = open_fs("gs://bucket/x/y.tar", StorageSettings(options=fresh))
    assert path == "bucket/x/y.tar"
    assert google.credentials.method == "google_default"
    assert google.credentials.credentials.client_id == "wfvae-test.apps.googleusercontent.com"
    given, _ = open_fs("gs://bucket/x", StorageSettings(gcs_token=str(key), options=fresh))
    assert given.credentials.credentials.client_id == "wfvae-test.apps.googleusercontent.com"
    public, _ = open_fs("gs://bucket/x", StorageSettings(anon=True, options=fresh))
    assert public.credentials.method == "anon"

    # An endpoint of one's own (here from Google's emulator variable) is reached anonymously.
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_endpoint.removeprefix("http://"))
    emulated, path = open_fs(f"{gcs_corpus}/files/clip_a.txt", StorageSettings(options=fresh))
    assert emulated.credentials.method == "anon"
    assert emulated.cat_file(path) == b"a noisy phone call"


def test_each_protocol_takes_its_own_endpoint_and_flags_reach_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)

    settings = load_settings(
        None,
        [
            "--inputs", '["s3://in/shard-{00000..00009}.tar"]', "--output", "gs://out/latents",
            "--storage.endpoint_url", "http://127.0.0.1:9000",
            "--storage.gcs_endpoint_url", "http://127.0.0.1:9023",
        ],
    )  # fmt: skip
    storage = settings.storage
    assert storage.fs_options("s3") == {"endpoint_url": "http://127.0.0.1:9000"}
    assert storage.fs_options("gs") == {"endpoint_url": "http://127.0.0.1:9023", "token": "anon"}
    assert storage.fs_options("file") == {}
    token = StorageSettings(gcs_token="/keys/sa.json", options={"project": "p"})
    assert token.fs_options("gcs") == {"token": "/keys/sa.json", "project": "p"}
    assert StorageSettings().fs_options("gs") == {}  # gcsfs's default chain of credentials
