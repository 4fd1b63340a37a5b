"""The text stage's Ray Data callables: committed latent parts -> (key, caption) rows (read),
captions -> embeddings (the text encoder actors), embeddings -> Parquet text parts (write).

No video is read: the captions come from the latent parts' `key` and `caption` columns, the
only column chunks fetched.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from model.precision import DtypeChoice
from model.storage import StorageSettings, open_fs
from model.text_encoder import CaptionEncoder
from pipeline.manifest import LATENTS_DIR
from pipeline.progress import ENCODE, READ, WRITE, ProgressBoard, report
from pipeline.records import INT_LIST, latent_to_bytes, write_parquet
from pipeline.storage import is_local, join_uri
from pipeline.text.layout import EMBEDDINGS_DIR, TEXT_ERRORS_DIR, text_part_name

if TYPE_CHECKING:
    from ray.actor import ActorHandle

log = logging.getLogger(__name__)

__all__ = [
    "CAPTION_SCHEMA",
    "TEXT_ERROR_SCHEMA",
    "TEXT_PART_SCHEMA",
    "TEXT_SCHEMA",
    "TextStage",
    "read_captions",
    "read_columns",
    "text_part_records",
    "write_text_parts",
]

TEXT_STAGE = "text"  # the `stage` of a caption's error row

# Read task -> text actors: one row per clip of a committed latent part.
CAPTION_SCHEMA = pa.schema(
    [
        ("unit_id", pa.string()),
        ("latent_file", pa.string()),  # the latent part's name under latents/
        ("key", pa.string()),
        ("caption", pa.string()),
    ]
)

# Text actors -> write tasks.
TEXT_TRANSIT_SCHEMA = pa.schema(
    list(CAPTION_SCHEMA)
    + [
        ("text_embedding", pa.binary()),
        ("text_shape", INT_LIST),
        ("text_dtype", pa.string()),
        ("token_count", pa.int32()),
        ("reason", pa.string()),
        ("message", pa.string()),
    ]
)

# On disk, `text/<tag>/embeddings/*.parquet`: no column but `key` shares a latent row's name,
# so every join keeps both sides' columns as they are.
TEXT_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("text_embedding", pa.binary()),  # (tokens, dim) little-endian text_dtype; null: no caption
        ("text_shape", INT_LIST),  # (token_count, dim): the padding is not stored
        ("text_dtype", pa.string()),
        ("token_count", pa.int32()),  # tokens before padding (special tokens included)
    ]
)

TEXT_ERROR_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("caption", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),  # untokenizable, no_tokens, non_finite
        ("message", pa.string()),
    ]
)

# What the driver receives per (latent part, write batch): a few hundred bytes.
TEXT_PART_SCHEMA = pa.schema(
    [
        ("unit_id", pa.string()),
        ("latent_file", pa.string()),
        ("embedding_file", pa.string()),  # under embeddings/, "" when every row failed
        ("error_file", pa.string()),  # under errors/, "" when none did
        ("rows", pa.int32()),
        ("embedded", pa.int32()),
        ("nulls", pa.int32()),
        ("tokens", pa.int64()),
        ("error_reasons", pa.string()),  # JSON {reason: count}
        ("bytes_written", pa.int64()),
    ]
)


def read_columns(uri: str, columns: list[str], storage: StorageSettings) -> pa.Table:
    """`columns` of the Parquet file at `uri`, fetching only their column chunks and the footer
    (no read-ahead cache on object storage: it would fetch the latents around them)."""
    fs, path = open_fs(uri, storage)
    options = {} if is_local(fs) else {"cache_type": "none"}
    with fs.open(path, "rb", **options) as handle:
        return pq.ParquetFile(handle, pre_buffer=True).read(columns=columns)


def read_captions(
    batch: pa.Table,
    output: str,
    storage: StorageSettings,
    board: ActorHandle[ProgressBoard] | None = None,
) -> pa.Table:
    """Ray `map_batches` UDF over (unit_id, latent_file) rows: each latent part's clips' captions."""
    started = time.process_time()
    tables = []
    for row in batch.to_pylist():
        rows = read_columns(
            join_uri(output, LATENTS_DIR, row["latent_file"]), ["key", "caption"], storage
        )
        n = rows.num_rows
        tables.append(
            pa.table(
                {
                    "unit_id": pa.array([row["unit_id"]] * n, pa.string()),
                    "latent_file": pa.array([row["latent_file"]] * n, pa.string()),
                    "key": rows.column("key"),
                    "caption": rows.column("caption"),
                },
                schema=CAPTION_SCHEMA,
            )
        )
    table = pa.concat_tables(tables) if tables else CAPTION_SCHEMA.empty_table()
    report(
        board,
        READ,
        units_read=batch.num_rows,
        rows_read=table.num_rows,
        cpu_s=time.process_time() - started,
    )
    return table


class TextStage:
    """Ray `map_batches` callable class: loads the text encoder once per actor, embeds captions."""

    def __init__(
        self,
        source: str,
        max_tokens: int,
        precision: DtypeChoice,
        device: str = "auto",
        force_dtype: bool = False,
        batch_size: int = 32,
        board: ActorHandle[ProgressBoard] | None = None,
    ) -> None:
        self.encoder = CaptionEncoder(
            source, max_tokens, precision, device, force_dtype, batch_size
        )
        self.text_dtype = precision.name
        self.board = board

    def __call__(self, batch: pa.Table) -> pa.Table:
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        encoded_before = self.encoder.captions_encoded
        results = self.encoder.encode(batch.column("caption").to_pylist())
        embeddings: list[bytes | None] = []
        shapes: list[list[int] | None] = []
        for result in results:
            if result.embedding is None:
                embeddings.append(None)
                shapes.append(None)
            else:
                data, shape, _ = latent_to_bytes(result.embedding, self.text_dtype)
                embeddings.append(data)
                shapes.append(shape)
        out = batch.select(CAPTION_SCHEMA.names)
        for name, values, kind in (
            ("text_embedding", embeddings, pa.binary()),
            ("text_shape", shapes, INT_LIST),
            (
                "text_dtype",
                [self.text_dtype if e is not None else None for e in embeddings],
                pa.string(),
            ),
            ("token_count", [r.token_count for r in results], pa.int32()),
            ("reason", [r.reason for r in results], pa.string()),
            ("message", [r.message for r in results], pa.string()),
        ):
            out = out.append_column(name, pa.array(values, kind))
        busy_s = time.perf_counter() - wall_started
        report(
            self.board,
            ENCODE,
            cpu_s=time.process_time() - cpu_started,
            gpu_s=busy_s if self.encoder.device.type == "cuda" else 0.0,
            rows_encoded=batch.num_rows,
            captions_encoded=self.encoder.captions_encoded - encoded_before,
            errors=dict(Counter(f"{TEXT_STAGE}:{r.reason}" for r in results if r.failed)),
        )
        return out.cast(TEXT_TRANSIT_SCHEMA)


def _digest(keys: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]


def text_part_records(
    batch: pa.Table, prefix: str, storage: StorageSettings, file_metadata: Mapping[str, object]
) -> pa.Table:
    """Write each latent part's rows of `batch` as one embeddings and one errors part; return
    TEXT_PART_SCHEMA rows. No file without rows."""
    records = []
    parts = batch.column("latent_file")
    for latent_file in sorted(set(parts.to_pylist())):
        rows = batch.filter(pc.equal(parts, latent_file))
        rows = rows.take(pc.sort_indices(rows, sort_keys=[("key", "ascending")]))
        failed = pc.not_equal(rows.column("reason"), "")
        kept, errors = rows.filter(pc.invert(failed)), rows.filter(failed)
        unit_id = rows.column("unit_id")[0].as_py()
        name = text_part_name(latent_file, _digest(rows.column("key").to_pylist()))
        meta = {**file_metadata, "unit_id": unit_id, "latent_file": latent_file}
        written = 0
        if kept.num_rows:
            written += write_parquet(
                join_uri(prefix, EMBEDDINGS_DIR, name),
                kept.select(TEXT_SCHEMA.names).cast(TEXT_SCHEMA),
                meta,
                storage,
            )
        if errors.num_rows:
            stage = pa.array([TEXT_STAGE] * errors.num_rows, pa.string())
            written += write_parquet(
                join_uri(prefix, TEXT_ERRORS_DIR, name),
                errors.append_column("stage", stage)
                .select(TEXT_ERROR_SCHEMA.names)
                .cast(TEXT_ERROR_SCHEMA),
                meta,
                storage,
            )
        embedded = pc.count(kept.column("text_embedding")).as_py()  # non-null: a caption
        records.append(
            {
                "unit_id": unit_id,
                "latent_file": latent_file,
                "embedding_file": name if kept.num_rows else "",
                "error_file": name if errors.num_rows else "",
                "rows": rows.num_rows,
                "embedded": embedded,
                "nulls": kept.num_rows - embedded,
                "tokens": int(pc.sum(kept.column("token_count")).as_py() or 0),
                "error_reasons": json.dumps(dict(Counter(errors.column("reason").to_pylist()))),
                "bytes_written": written,
            }
        )
    return pa.Table.from_pylist(records, schema=TEXT_PART_SCHEMA)


def write_text_parts(
    batch: pa.Table,
    prefix: str,
    storage: StorageSettings,
    file_metadata: Mapping[str, object],
    board: ActorHandle[ProgressBoard] | None = None,
) -> pa.Table:
    """Ray `map_batches` UDF: embedded rows in, text part files out, TEXT_PART_SCHEMA records back."""
    started = time.process_time()
    records = text_part_records(batch, prefix, storage, file_metadata)
    report(
        board,
        WRITE,
        cpu_s=time.process_time() - started,
        rows_written=batch.num_rows,
        bytes_written=sum(records.column("bytes_written").to_pylist()),
    )
    return records
