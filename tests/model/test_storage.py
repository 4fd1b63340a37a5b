"""model.storage: one read for a local path, a `file://` URI and an object on moto's S3."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from model.storage import StorageSettings, open_fs, protocol_of, read_bytes


def test_read_bytes_reads_local_files_and_objects_alike(tmp_path: Path, s3_endpoint: str) -> None:
    data = uuid.uuid4().bytes * 3
    local = tmp_path / "clip.bin"
    local.write_bytes(data)
    storage = StorageSettings(endpoint_url=s3_endpoint)
    bucket = f"read-{uuid.uuid4().hex[:8]}"
    fs, _ = open_fs(f"s3://{bucket}", storage)
    fs.mkdir(bucket)
    fs.pipe_file(f"{bucket}/clip.bin", data)
    assert read_bytes(str(local)) == read_bytes(f"file://{local}") == data
    assert read_bytes(f"s3://{bucket}/clip.bin", storage) == data
    assert (protocol_of(f"s3://{bucket}/x"), protocol_of(str(local))) == ("s3", "file")
    with pytest.raises(FileNotFoundError):
        read_bytes(f"s3://{bucket}/missing.bin", storage)
