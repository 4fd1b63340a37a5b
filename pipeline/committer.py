"""Driver-side commit: gather each unit's encoded rows, and once all its samples are in, write its files and marker."""

from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.manifest import ChannelSums, UnitMarker, errors_uri, latents_uri, write_marker
from pipeline.records import ERROR_SCHEMA, LATENT_SCHEMA, latent_from_bytes, write_parquet
from pipeline.sources import WorkUnit
from pipeline.storage import StorageSettings

log = logging.getLogger(__name__)

__all__ = ["UnitCommitter", "channel_sums"]

WRITER_THREADS = 2


@dataclass
class _Pending:
    """Rows of one unit received so far, and what is still missing."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    samples: int | None = None  # known once the unit_end row arrives
    expected: dict[int, int] = field(default_factory=dict)  # sample index -> rows it yields
    seen: Counter[int] = field(default_factory=Counter)

    def complete(self) -> bool:
        if self.samples is None or len(self.expected) != self.samples:
            return False
        return all(self.seen[i] == n for i, n in self.expected.items())


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


class UnitCommitter:
    """Buffers encoded rows by unit; writes a finished unit's latents, errors and marker on a thread."""

    def __init__(
        self,
        output: str,
        storage: StorageSettings,
        units: list[WorkUnit],
        file_metadata: dict[str, Any],
        settings_hash: str,
    ) -> None:
        self.output = output
        self.storage = storage
        self.units = {unit.unit_id: unit for unit in units}
        self.file_metadata = file_metadata
        self.settings_hash = settings_hash
        self.pending: dict[str, _Pending] = {}
        self.markers: list[UnitMarker] = []
        self._writes: list[Future[UnitMarker]] = []
        self._pool = ThreadPoolExecutor(WRITER_THREADS, thread_name_prefix="unit-writer")

    def add(self, batch: pa.Table) -> None:
        """Take a block of encoded rows; submit every unit it completes for writing."""
        touched = set()
        for row in batch.to_pylist():
            state = self.pending.setdefault(row["unit_id"], _Pending())
            touched.add(row["unit_id"])
            if row["row_kind"] == "unit_end":
                state.samples = row["unit_samples"]
                continue
            state.rows.append(row)
            state.expected[row["sample_index"]] = row["sample_rows"]
            state.seen[row["sample_index"]] += 1
        for unit_id in sorted(touched):
            if self.pending[unit_id].complete():
                state = self.pending.pop(unit_id)
                self._writes.append(self._pool.submit(self._write_unit, unit_id, state.rows))

    def finish(self) -> list[UnitMarker]:
        """Wait for every write; raises if a unit never completed (rows lost) or a write failed."""
        self._pool.shutdown(wait=True)
        self.markers.extend(f.result() for f in self._writes)
        if self.pending:
            raise RuntimeError(f"units left incomplete: {sorted(self.pending)}")
        return self.markers

    def _write_unit(self, unit_id: str, rows: list[dict[str, Any]]) -> UnitMarker:
        rows.sort(key=lambda r: (r["sample_index"], r["clip_index"], r["key"]))
        clips = [r for r in rows if r["row_kind"] == "clip"]
        errors = [r for r in rows if r["row_kind"] == "error"]
        latents = [
            latent_from_bytes(r["latent"], r["latent_shape"], r["latent_dtype"]) for r in clips
        ]
        latent_kind = str(self.file_metadata.get("latent_kind", ""))
        latent_table = pa.Table.from_pylist(
            [{**_pick(r, LATENT_SCHEMA), "latent_kind": latent_kind} for r in clips],
            schema=LATENT_SCHEMA,
        )
        error_table = pa.Table.from_pylist(
            [_pick(r, ERROR_SCHEMA) for r in errors], schema=ERROR_SCHEMA
        )
        meta = {**self.file_metadata, "unit_id": unit_id}
        write_parquet(latents_uri(self.output, unit_id), latent_table, meta, self.storage)
        write_parquet(errors_uri(self.output, unit_id), error_table, meta, self.storage)
        unit = self.units[unit_id]
        marker = UnitMarker(
            unit_id=unit_id,
            sources=unit.sources(),
            settings_hash=self.settings_hash,
            samples=len({r["sample_index"] for r in rows}),
            clips=len(clips),
            errors=len(errors),
            errors_by_reason=dict(Counter(r["reason"] for r in errors)),
            sums=channel_sums(latents),
        )
        write_marker(self.output, marker, self.storage)  # last: the unit counts as done only now
        log.info("unit %s: %d clips, %d errors", unit_id, marker.clips, marker.errors)
        return marker


def _pick(row: dict[str, Any], schema: pa.Schema) -> dict[str, Any]:
    return {name: row.get(name) for name in schema.names}
