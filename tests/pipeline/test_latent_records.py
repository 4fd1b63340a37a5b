"""Latent bytes and Parquet metadata, read back with plain pyarrow, pandas and torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from model.storage import StorageSettings
from pipeline.records import (
    LATENT_SCHEMA,
    latent_from_bytes,
    latent_to_bytes,
    read_file_metadata,
    write_parquet,
)


def test_float32_latents_round_trip_exactly_and_torch_reads_the_bytes() -> None:
    z = np.random.default_rng(0).standard_normal((8, 3, 8, 8)).astype(np.float32)
    data, shape, dtype = latent_to_bytes(z)
    assert (shape, dtype) == ([8, 3, 8, 8], "float32")
    assert np.array_equal(latent_from_bytes(data, shape, dtype), z)
    assert torch.equal(
        torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(shape), torch.from_numpy(z)
    )


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_storage_matches_torch_rounding(dtype: str) -> None:
    z = np.random.default_rng(1).standard_normal((4, 2, 3, 5)).astype(np.float32)
    data, shape, name = latent_to_bytes(z, dtype)
    expected = torch.from_numpy(z).to(getattr(torch, dtype))
    assert len(data) == z.size * 2
    assert np.array_equal(latent_from_bytes(data, shape, name), expected.float().numpy())
    assert torch.equal(
        torch.frombuffer(bytearray(data), dtype=getattr(torch, dtype)).reshape(shape), expected
    )


def test_parquet_metadata_round_trips_and_pandas_reads_the_rows(tmp_path: Path) -> None:
    z = np.ones((8, 1, 2, 2), np.float32)
    data, shape, dtype = latent_to_bytes(z)
    row = {name: None for name in LATENT_SCHEMA.names} | {
        "key": "k",
        "latent": data,
        "latent_shape": shape,
        "latent_dtype": dtype,
        "frame_indices": [0],
    }
    table = pa.Table.from_pylist([row], schema=LATENT_SCHEMA)
    target = tmp_path / "latents" / "u.parquet"
    write_parquet(str(target), table, {"model_id": "m", "scale": [0.5, 0.25]}, StorageSettings())
    read = pq.read_table(target)
    meta = read_file_metadata(read.schema)
    assert (
        meta["model_id"] == "m" and meta["scale"] == "[0.5, 0.25]" and meta["format_version"] == "1"
    )
    frame = read.to_pandas()
    assert frame.loc[0, "key"] == "k" and list(frame.loc[0, "latent_shape"]) == shape
