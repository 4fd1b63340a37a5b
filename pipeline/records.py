"""Row formats: the Arrow schemas between stages and on disk, latent bytes, Parquet writes (row keys: `model.latents.keys`)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from model.storage import StorageSettings
from pipeline.storage import atomic_write

__all__ = [
    "ERROR_SCHEMA",
    "LATENT_SCHEMA",
    "METADATA_PREFIX",
    "TRANSIT_SCHEMA",
    "file_metadata",
    "latent_from_bytes",
    "latent_to_bytes",
    "read_file_metadata",
    "write_parquet",
]

FORMAT_VERSION = "1"
METADATA_PREFIX = "wfvae."
STORAGE_DTYPES = ("float32", "float16", "bfloat16")
INT_LIST = pa.list_(pa.int32())

# One schema for every row between Ray stages, so blocks of clips, errors and unit ends concatenate.
TRANSIT_SCHEMA = pa.schema(
    [
        ("row_kind", pa.string()),  # "clip" | "error" | "unit_end"
        ("unit_id", pa.string()),
        ("sample_index", pa.int32()),  # position of the sample in its unit
        ("sample_rows", pa.int32()),  # rows this sample yields (its clips, or 1 error)
        ("unit_samples", pa.int32()),  # on the unit_end row: samples the unit held
        ("key", pa.string()),
        ("source_uri", pa.string()),
        ("shard", pa.string()),
        ("member_key", pa.string()),
        ("caption", pa.string()),
        ("metadata", pa.string()),
        ("clip_index", pa.int32()),
        ("frames", pa.large_binary()),  # (T, H, W, 3) uint8, C order
        ("frames_shape", INT_LIST),
        ("fps", pa.float64()),
        ("frame_indices", INT_LIST),
        ("source_size", INT_LIST),  # (height, width)
        ("target_size", INT_LIST),
        ("bucket", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("message", pa.string()),
        # time.time() when the decode task handed the row on: the encoder measures how long it
        # waited (wall clocks, comparable across NTP-synced nodes; monotonic clocks are not)
        ("decoded_at", pa.float64()),
    ]
)

# Transit-only columns: the encoder consumes them
ENCODER_INPUT_COLUMNS = ("frames", "frames_shape", "decoded_at")

LATENT_COLUMNS = [
    ("latent", pa.binary()),
    ("latent_shape", INT_LIST),  # (C, t, h, w)
    ("latent_dtype", pa.string()),
]

ENCODED_SCHEMA = pa.schema(
    [f for f in TRANSIT_SCHEMA if f.name not in ENCODER_INPUT_COLUMNS]
    + [pa.field(n, t) for n, t in LATENT_COLUMNS]
)

LATENT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("latent", pa.binary()),
        ("latent_shape", INT_LIST),
        ("latent_dtype", pa.string()),
        ("latent_kind", pa.string()),
        ("caption", pa.string()),
        ("source_uri", pa.string()),
        ("shard", pa.string()),
        ("member_key", pa.string()),
        ("clip_index", pa.int32()),
        ("fps", pa.float64()),
        ("frame_indices", INT_LIST),
        ("source_size", INT_LIST),
        ("target_size", INT_LIST),
        ("bucket", pa.string()),
        ("metadata", pa.string()),
    ]
)

ERROR_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source_uri", pa.string()),
        ("shard", pa.string()),
        ("member_key", pa.string()),
        ("stage", pa.string()),  # read | decode | encode
        ("reason", pa.string()),
        ("message", pa.string()),
    ]
)


def latent_to_bytes(latent: np.ndarray, dtype: str = "float32") -> tuple[bytes, list[int], str]:
    """A latent (C, t, h, w) as raw little-endian bytes of `dtype`, its shape and the dtype's name."""
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"latent dtype must be one of {STORAGE_DTYPES}, got {dtype!r}")
    shape = [int(s) for s in latent.shape]
    if dtype == "bfloat16":
        import torch

        bits = torch.from_numpy(np.ascontiguousarray(latent, dtype=np.float32)).to(torch.bfloat16)
        return bits.view(torch.int16).numpy().astype("<i2").tobytes(), shape, dtype
    return (
        np.ascontiguousarray(latent, dtype=np.dtype(dtype).newbyteorder("<")).tobytes(),
        shape,
        dtype,
    )


def latent_from_bytes(data: bytes, shape: list[int], dtype: str) -> np.ndarray:
    """The float32 array stored by `latent_to_bytes` (bfloat16 widened exactly)."""
    if dtype == "bfloat16":
        high = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
        return high.view(np.float32).reshape(shape)
    return (
        np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<"))
        .astype(np.float32)
        .reshape(shape)
    )


def file_metadata(values: Mapping[str, object]) -> dict[bytes, bytes]:
    """Key-value metadata for a Parquet footer: `wfvae.<name>` -> JSON text."""
    merged = {"format_version": FORMAT_VERSION, **values}
    return {
        f"{METADATA_PREFIX}{name}".encode(): (
            value if isinstance(value, str) else json.dumps(value)
        ).encode()
        for name, value in merged.items()
    }


def read_file_metadata(schema: pa.Schema) -> dict[str, str]:
    """The `wfvae.*` key-value metadata of a Parquet file's schema, as text."""
    raw = schema.metadata or {}
    return {
        k.decode()[len(METADATA_PREFIX) :]: v.decode()
        for k, v in raw.items()
        if k.decode().startswith(METADATA_PREFIX)
    }


def write_parquet(
    uri: str, table: pa.Table, metadata: Mapping[str, object], storage: StorageSettings
) -> int:
    """Write `table` with `wfvae.*` metadata to `uri` atomically; return the bytes written."""
    table = table.replace_schema_metadata(file_metadata(metadata))
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    data = buffer.getvalue()
    atomic_write(uri, data, storage)
    return len(data)
