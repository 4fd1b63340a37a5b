"""Worker-side writes: encoded rows -> Parquet part files on storage, and the small record of each part for the driver."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from model.storage import StorageSettings
from pipeline.manifest import ERRORS_DIR, LATENTS_DIR, ChannelSums, part_name
from pipeline.progress import WRITE, ProgressBoard, report
from pipeline.records import ERROR_SCHEMA, LATENT_SCHEMA, latent_from_bytes, write_parquet
from pipeline.storage import join_uri

if TYPE_CHECKING:
    from ray.actor import ActorHandle

log = logging.getLogger(__name__)

__all__ = ["PART_SCHEMA", "channel_sums", "part_records", "write_parts"]

# What the driver receives per (unit, write batch) instead of the rows: a few hundred bytes.
PART_SCHEMA = pa.schema(
    [
        ("unit_id", pa.string()),
        ("sample_index", pa.list_(pa.int32())),  # samples with rows in this part
        ("sample_rows", pa.list_(pa.int32())),  # rows each of them yields in all
        ("rows_here", pa.list_(pa.int32())),  # rows of each of them in this part
        ("unit_samples", pa.int32()),  # samples of the unit, where its end row is here; else -1
        ("latents_file", pa.string()),  # part file name under latents/, "" when no clip
        ("errors_file", pa.string()),  # under errors/, "" when no error
        ("clips", pa.int32()),
        ("error_reasons", pa.string()),  # JSON {reason: count}
        ("sums", pa.string()),  # JSON ChannelSums of the part's latents
        ("bytes_written", pa.int64()),
    ]
)


def channel_sums(latents: list[np.ndarray]) -> ChannelSums:
    """Per-channel count, sum and sum of squares over (C, t, h, w) latents, in float64."""
    if not latents:
        return ChannelSums()
    channels = latents[0].shape[0]
    count = np.zeros(channels, np.int64)
    total = np.zeros(channels, np.float64)
    squares = np.zeros(channels, np.float64)
    for z in latents:
        flat = z.reshape(channels, -1).astype(np.float64)  # (C, t*h*w)
        count += flat.shape[1]
        total += flat.sum(axis=1)
        squares += (flat * flat).sum(axis=1)
    return ChannelSums(count=count.tolist(), total=total.tolist(), squares=squares.tolist())


def _part_digest(keys: list[str]) -> str:
    """A name from the part's row keys: a retried write of the same rows lands on the same file."""
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def _sorted(rows: pa.Table) -> pa.Table:
    order = pc.sort_indices(
        rows,
        sort_keys=[
            ("sample_index", "ascending"),
            ("clip_index", "ascending"),
            ("key", "ascending"),
        ],
    )
    return rows.take(order)


def _latent_table(clips: pa.Table, latent_kind: str) -> pa.Table:
    kinds = pa.array([latent_kind] * clips.num_rows, pa.string())
    table = clips.append_column("latent_kind", kinds)
    return table.select(LATENT_SCHEMA.names).cast(LATENT_SCHEMA)


def _sample_counts(rows: pa.Table) -> tuple[list[int], list[int], list[int]]:
    """(sample index, rows it yields, rows of it here) for the samples among `rows`."""
    indices = rows.column("sample_index").to_pylist()
    expected = rows.column("sample_rows").to_pylist()
    here: Counter[int] = Counter(indices)
    yields = dict(zip(indices, expected, strict=True))
    ordered = sorted(here)
    return ordered, [yields[i] for i in ordered], [here[i] for i in ordered]


def part_records(
    batch: pa.Table, output: str, storage: StorageSettings, file_metadata: Mapping[str, object]
) -> pa.Table:
    """Write each unit's rows of `batch` as one latents and one errors part; return PART_SCHEMA rows.

    A part holds only rows of one unit. No file is written without rows (a unit whose videos all
    failed has no latents file), so every file has a non-empty row group.
    """
    latent_kind = str(file_metadata.get("latent_kind", ""))
    records = []
    units = batch.column("unit_id")
    for unit_id in sorted(set(units.to_pylist())):
        rows = batch.filter(pc.equal(units, unit_id))
        kinds = rows.column("row_kind")
        ends = rows.filter(pc.equal(kinds, "unit_end")).column("unit_samples").to_pylist()
        data = _sorted(rows.filter(pc.not_equal(kinds, "unit_end")))
        clips = data.filter(pc.equal(data.column("row_kind"), "clip"))
        errors = data.filter(pc.equal(data.column("row_kind"), "error"))
        name = part_name(unit_id, _part_digest(data.column("key").to_pylist()))
        meta = {**file_metadata, "unit_id": unit_id}
        written = 0
        if clips.num_rows:
            written += write_parquet(
                join_uri(output, LATENTS_DIR, name),
                _latent_table(clips, latent_kind),
                meta,
                storage,
            )
        if errors.num_rows:
            written += write_parquet(
                join_uri(output, ERRORS_DIR, name),
                errors.select(ERROR_SCHEMA.names).cast(ERROR_SCHEMA),
                meta,
                storage,
            )
        latents = [
            latent_from_bytes(z, shape, dtype)
            for z, shape, dtype in zip(
                clips.column("latent").to_pylist(),
                clips.column("latent_shape").to_pylist(),
                clips.column("latent_dtype").to_pylist(),
                strict=True,
            )
        ]
        indices, yields, here = _sample_counts(data)
        records.append(
            {
                "unit_id": unit_id,
                "sample_index": indices,
                "sample_rows": yields,
                "rows_here": here,
                "unit_samples": ends[0] if ends else -1,
                "latents_file": name if clips.num_rows else "",
                "errors_file": name if errors.num_rows else "",
                "clips": clips.num_rows,
                "error_reasons": json.dumps(dict(Counter(errors.column("reason").to_pylist()))),
                "sums": channel_sums(latents).model_dump_json(),
                "bytes_written": written,
            }
        )
    return pa.Table.from_pylist(records, schema=PART_SCHEMA)


def write_parts(
    batch: pa.Table,
    output: str,
    storage: StorageSettings,
    file_metadata: Mapping[str, object],
    board: ActorHandle[ProgressBoard] | None = None,
) -> pa.Table:
    """Ray `map_batches` UDF: encoded rows in, part files out, PART_SCHEMA records back."""
    started = time.process_time()
    records = part_records(batch, output, storage, file_metadata)
    report(
        board,
        WRITE,
        cpu_s=time.process_time() - started,
        rows_written=batch.num_rows,
        clips_written=sum(records.column("clips").to_pylist()),
        bytes_written=sum(records.column("bytes_written").to_pylist()),
    )
    return records
