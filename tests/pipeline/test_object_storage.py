"""Input expansion and writes on local disk and moto's S3: braces, globs, list files, versions, atomicity."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.storage import StorageSettings, open_fs
from pipeline.storage import atomic_write, expand_braces, expand_inputs, file_version


def test_brace_ranges_keep_zero_padding_and_alternatives_expand() -> None:
    assert expand_braces("s3://b/shard-{00008..00011}.tar") == [
        f"s3://b/shard-{n:05d}.tar" for n in range(8, 12)
    ]
    assert expand_braces("{a,b}/x-{1..2}") == ["a/x-1", "a/x-2", "b/x-1", "b/x-2"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_s3_globs_braces_and_list_files(s3_corpus: str, s3_endpoint: str) -> None:
    storage = StorageSettings(endpoint_url=s3_endpoint)
    atomic_write(
        f"{s3_corpus}/lists/inputs.txt",
        b"# shards\ns3://videos/shards/shard-00001.tar\n\n",
        storage,
    )
    found = expand_inputs(
        [f"{s3_corpus}/shards/shard-{{00000..00000}}.tar", f"{s3_corpus}/files/*.mp4"],
        storage,
        input_lists=[f"{s3_corpus}/lists/inputs.txt"],
    )
    assert found == [
        "s3://videos/shards/shard-00000.tar",
        "s3://videos/files/clip_a.mp4",
        "s3://videos/files/clip_b.mp4",
        "s3://videos/files/short.mp4",
        "s3://videos/shards/shard-00001.tar",
    ]


def test_endpoint_from_the_standard_aws_environment(
    s3_corpus: str, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    fs, path = open_fs(
        f"{s3_corpus}/files/clip_a.txt", StorageSettings(options={"skip_instance_cache": True})
    )
    assert fs.cat_file(path) == b"a noisy phone call"


def test_local_paths_and_file_uris(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    storage = StorageSettings()
    by_path = expand_inputs([str(corpus.root / "files" / "*.mp4")], storage)
    by_uri = expand_inputs(
        [f"file://{corpus.root}/files/*.mp4", f"file://{corpus.root}/files/clip_a.mp4"], storage
    )
    assert (
        by_path
        == by_uri
        == [str(corpus.root / "files" / n) for n in ("clip_a.mp4", "clip_b.mp4", "short.mp4")]
    )


def test_local_atomic_write_replaces_whole_files_and_leaves_no_temporaries(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "out.bin"
    atomic_write(str(target), b"old", StorageSettings())
    atomic_write(str(target), b"new contents", StorageSettings())
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in target.parent.iterdir()] == ["out.bin"]


def test_versions_come_from_etags_or_mtime_and_size(
    s3_corpus: str, s3_endpoint: str, corpus
) -> None:  # type: ignore[no-untyped-def]
    storage = StorageSettings(endpoint_url=s3_endpoint)
    fs, path = open_fs(f"{s3_corpus}/files/clip_a.mp4", storage)
    etag = file_version(fs.info(path))
    assert etag and '"' not in etag
    local = corpus.root / "files" / "clip_a.mp4"
    lfs, lpath = open_fs(str(local), StorageSettings())
    assert file_version(lfs.info(lpath)).endswith(f"-{local.stat().st_size}")
