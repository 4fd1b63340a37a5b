"""The Ray Data stage callables: unit -> clip rows (read, decode, sample), clip rows -> latent rows (encode)."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from model.errors import WFVAEError
from model.latents import ClipEncoder, EncoderSettings, clip_key, error_key
from model.media import ClipSettings, error_reason, sample_clips
from model.precision import DtypeChoice
from model.storage import StorageSettings
from pipeline.progress import ENCODE, READ, ProgressBoard, report
from pipeline.records import ENCODED_SCHEMA, ENCODER_INPUT_COLUMNS, TRANSIT_SCHEMA, latent_to_bytes
from pipeline.sources import Sample, SampleError, WorkUnit, iter_unit_samples

if TYPE_CHECKING:
    from ray.actor import ActorHandle

log = logging.getLogger(__name__)

__all__ = ["EncodeStage", "read_and_decode", "unit_rows"]

EMPTY_ROW: dict[str, Any] = {
    "sample_index": -1,
    "sample_rows": 0,
    "unit_samples": 0,
    "key": "",
    "source_uri": "",
    "shard": "",
    "member_key": "",
    "caption": "",
    "metadata": "",
    "clip_index": 0,
    "frames": b"",
    "frames_shape": [],
    "fps": 0.0,
    "frame_indices": [],
    "source_size": [],
    "target_size": [],
    "bucket": None,
    "stage": "",
    "reason": "",
    "message": "",
    "decoded_at": 0.0,
}


def _table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist([{**EMPTY_ROW, **row} for row in rows], schema=TRANSIT_SCHEMA)


def _stamped(table: pa.Table) -> pa.Table:
    """`table` with its rows' decoded_at set to now, as the decode task hands them on."""
    now = np.full(table.num_rows, time.time(), np.float64)
    return table.set_column(table.schema.get_field_index("decoded_at"), "decoded_at", pa.array(now))


def _error_row(
    unit: WorkUnit, index: int, failed: Sample | SampleError, stage: str, reason: str, message: str
) -> dict[str, Any]:
    return {
        "row_kind": "error",
        "unit_id": unit.unit_id,
        "sample_index": index,
        "sample_rows": 1,
        "key": error_key(failed, stage),
        "source_uri": failed.source_uri,
        "shard": unit.shard,
        "member_key": failed.member_key,
        "stage": stage,
        "reason": reason,
        "message": message,
    }


def _row_metadata(sample_metadata: str, notes: dict[str, int]) -> str:
    """The sample's metadata JSON, with `decode` ({frames_readable, frames_stated}) where its
    video broke before its end; a metadata text that is no JSON object goes under `sample`."""
    if not notes:
        return sample_metadata
    try:
        meta = json.loads(sample_metadata) if sample_metadata else {}
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        meta = {"sample": sample_metadata}
    return json.dumps({**meta, "decode": notes})


def unit_rows(
    unit: WorkUnit,
    storage: StorageSettings,
    clip_settings: ClipSettings,
    model_id: str,
    latent_kind: str,
) -> Iterator[pa.Table]:
    """Stream a unit's samples and yield, per sample, its clip rows or one error row; then a unit_end row."""
    count = 0
    for index, sample in enumerate(iter_unit_samples(unit, storage)):
        count += 1
        if isinstance(sample, SampleError):
            yield _table([_error_row(unit, index, sample, "read", sample.reason, sample.message)])
            continue
        try:
            clips = sample_clips(sample.video, clip_settings)
        except WFVAEError as error:  # VideoDecodeError and its kinds
            yield _table(
                [_error_row(unit, index, sample, "decode", error_reason(error), str(error))]
            )
            continue
        rows = []
        for clip in clips:
            rows.append(
                {
                    "row_kind": "clip",
                    "unit_id": unit.unit_id,
                    "sample_index": index,
                    "sample_rows": len(clips),
                    "key": clip_key(sample, clip, clip_settings.resize_mode, model_id, latent_kind),
                    "source_uri": sample.source_uri,
                    "shard": unit.shard,
                    "member_key": sample.member_key,
                    "caption": sample.caption,
                    "metadata": _row_metadata(sample.metadata, clip.decode_notes()),
                    "clip_index": clip.clip_index,
                    "frames": clip.frames.tobytes(),
                    "frames_shape": list(clip.frames.shape),
                    "fps": clip.fps,
                    "frame_indices": clip.frame_indices,
                    "source_size": list(clip.source_size),
                    "target_size": list(clip.target_size),
                    "bucket": clip.bucket,
                }
            )
        yield _table(rows)
    yield _table([{"row_kind": "unit_end", "unit_id": unit.unit_id, "unit_samples": count}])


def read_and_decode(
    batch: pa.Table,
    storage: StorageSettings,
    clip_settings: ClipSettings,
    model_id: str,
    latent_kind: str,
    board: ActorHandle[ProgressBoard] | None = None,
    block_bytes: int | None = None,
) -> Iterator[pa.Table]:
    """Ray `map_batches` UDF over a batch of work units (one row each); progress to `board`.

    Rows leave in tables of `block_bytes` (Ray Data's target_max_block_size; None: each call's
    rows in one) and the end of the call: Ray Data would hold smaller ones in its block buffer
    until then anyway, and so each row's `decoded_at` is when its block left this task, which
    the encoder's measure of the clips' wait needs (not the time the block took to fill).
    """
    pending: list[pa.Table] = []
    pending_bytes = 0
    for row in batch.to_pylist():
        unit = WorkUnit.from_row(row)
        started = time.process_time()
        for table in unit_rows(unit, storage, clip_settings, model_id, latent_kind):
            cpu_s, started = time.process_time() - started, time.process_time()
            kinds = table.column("row_kind").to_pylist()
            reasons = [
                f"{s}:{r}"
                for k, s, r in zip(
                    kinds,
                    table.column("stage").to_pylist(),
                    table.column("reason").to_pylist(),
                    strict=True,
                )
                if k == "error"
            ]
            report(
                board,
                READ,
                units_read=kinds.count("unit_end"),
                rows_read=len(kinds),
                clips_read=kinds.count("clip"),
                errors=dict(Counter(reasons)),
                cpu_s=cpu_s,
            )
            pending.append(table)
            pending_bytes += table.nbytes
            if block_bytes is not None and pending_bytes >= block_bytes:
                yield _stamped(pa.concat_tables(pending))
                pending, pending_bytes = [], 0
            started = time.process_time()  # not the time the consumer held the generator
    if pending:
        yield _stamped(pa.concat_tables(pending))


class EncodeStage:
    """Ray `map_batches` callable class: loads the model once per actor, encodes clip rows.

    It also reports how long it waited on the decode stage (idle from the end of one call to the
    start of the next; until its first call, separately, as start-up) and how long its clips
    waited on it (the call's start less each clip's `decoded_at`, or less the end of this
    actor's start-up where that is later): `pipeline.balance`.
    """

    def __init__(
        self,
        encoder: EncoderSettings,
        batch_size: int,
        latent_dtype: str = "float32",
        precision: DtypeChoice | None = None,
        board: ActorHandle[ProgressBoard] | None = None,
    ) -> None:
        # `precision`: the run's encode dtype, decided once on the driver (None: this actor's own)
        self.encoder = ClipEncoder.from_settings(encoder, precision)
        self.batch_size = batch_size
        self.latent_dtype = latent_dtype
        self.board = board
        # Model loaded: from here on it waits for clips, and clips wait for it. Wall clock too,
        # to compare with the clips' decoded_at.
        self.ready_at, self.ready_wall = time.perf_counter(), time.time()
        self.last_done: float | None = None

    def _waits(self, batch: pa.Table, kinds: list[str], started: float) -> dict[str, Any]:
        """This call's wait for its batch (start-up for the first call) and its clips' waits."""
        if self.last_done is None:
            waits: dict[str, Any] = {
                "encode_first_wait_s": started - self.ready_at,
                "encode_actors": 1,
            }
        else:
            waits = {"encode_waited_s": started - self.last_done}
        now = time.time()
        stamps = [
            stamp
            for kind, stamp in zip(kinds, batch.column("decoded_at").to_pylist(), strict=True)
            if kind == "clip" and stamp  # 0 or null: not stamped (a row built by hand)
        ]
        # From decoded or from this encoder's start-up end, whichever is later: clips decoded
        # while the pool starts wait on start-up, not on encoding. max(0, ...): the decode task
        # may run on another node, its clock a little ahead.
        waits["clip_wait_s"] = sum(max(0.0, now - max(stamp, self.ready_wall)) for stamp in stamps)
        waits["clips_waited"] = len(stamps)
        return waits

    def __call__(self, batch: pa.Table) -> pa.Table:
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        kinds = batch.column("row_kind").to_pylist()
        waits = self._waits(batch, kinds, wall_started)
        shapes = batch.column("frames_shape").to_pylist()
        keys = batch.column("key").to_pylist()
        frames_column = batch.column("frames")
        latents: list[bytes | None] = [None] * batch.num_rows
        latent_shapes: list[list[int]] = [[] for _ in range(batch.num_rows)]
        failures: dict[int, tuple[str, str]] = {}
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (kind, shape) in enumerate(zip(kinds, shapes, strict=True)):
            if kind == "clip":
                groups.setdefault(tuple(shape), []).append(i)
        for shape, indices in groups.items():  # the model only ever sees same-shape batches
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                clips = [
                    np.frombuffer(frames_column[i].as_py(), dtype=np.uint8).reshape(shape)
                    for i in chunk
                ]
                try:
                    z = self.encoder.encode_clips(
                        clips, [keys[i] for i in chunk]
                    )  # (B, C, t, h, w)
                except WFVAEError as error:
                    log.warning(
                        "encode failed for %d clips of shape %s: %s", len(chunk), shape, error
                    )
                    for i in chunk:
                        failures[i] = (error_reason(error), str(error))
                    continue
                for i, latent in zip(chunk, z, strict=True):
                    latents[i], latent_shapes[i], _ = latent_to_bytes(latent, self.latent_dtype)
        out = batch.drop_columns(list(ENCODER_INPUT_COLUMNS))
        if failures:
            out = _mark_failures(out, failures)
        out = out.append_column("latent", pa.array(latents, pa.binary()))
        out = out.append_column("latent_shape", pa.array(latent_shapes, pa.list_(pa.int32())))
        dtypes = [self.latent_dtype if z is not None else "" for z in latents]
        out = out.append_column("latent_dtype", pa.array(dtypes, pa.string()))
        on_gpu = self.encoder.device.type == "cuda"
        out = out.cast(ENCODED_SCHEMA)
        busy_s = time.perf_counter() - wall_started
        report(
            self.board,
            ENCODE,
            cpu_s=time.process_time() - cpu_started,
            gpu_s=busy_s if on_gpu else 0.0,
            encode_busy_s=busy_s,
            encode_calls=1,
            encode_batches=int("clip" in kinds),
            rows_encoded=batch.num_rows,
            clips_encoded=sum(z is not None for z in latents),
            errors=dict(Counter(f"encode:{reason}" for reason, _ in failures.values())),
            **waits,
        )
        self.last_done = time.perf_counter()
        return out


def _mark_failures(table: pa.Table, failures: dict[int, tuple[str, str]]) -> pa.Table:
    """Turn the clip rows at `failures` into encode-stage error rows."""
    columns = {
        name: table.column(name).to_pylist() for name in ("row_kind", "stage", "reason", "message")
    }
    for i, (reason, message) in failures.items():
        columns["row_kind"][i] = "error"
        columns["stage"][i] = "encode"
        columns["reason"][i] = reason
        columns["message"][i] = message
    for name, values in columns.items():
        table = table.set_column(
            table.schema.get_field_index(name), name, pa.array(values, pa.string())
        )
    return table
