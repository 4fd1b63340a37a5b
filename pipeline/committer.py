"""Driver-side commit: gather each unit's part records, and once every sample's rows are on storage, write its marker.

The driver sees no latent: workers write the Parquet parts (`pipeline.parts`) and send back a
record per part (unit, sample indices and row counts, file names, channel sums). A unit is
complete when its end record has said how many samples it holds and every one of them has all
the rows it yields; only then is its marker written, naming the parts, so a unit becomes
visible in one step.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from model.storage import StorageSettings
from pipeline.manifest import ChannelSums, UnitMarker, write_marker
from pipeline.sources import WorkUnit

log = logging.getLogger(__name__)

__all__ = ["UnitCommitter"]

MARKER_THREADS = 4  # markers are small PUTs; a few in flight hide object-store latency


@dataclass
class _Progress:
    """What has been written of one unit so far."""

    samples: int | None = None  # known once the part holding the unit's end arrives
    expected: dict[int, int] = field(default_factory=dict)  # sample index -> rows it yields
    seen: Counter[int] = field(default_factory=Counter)  # sample index -> rows written
    latent_files: list[str] = field(default_factory=list)
    error_files: list[str] = field(default_factory=list)
    clips: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    sums: ChannelSums = field(default_factory=ChannelSums)

    def complete(self) -> bool:
        if self.samples is None or len(self.expected) != self.samples:
            return False
        return all(self.seen[i] == n for i, n in self.expected.items())


class UnitCommitter:
    """Takes part records (`pipeline.parts.PART_SCHEMA`); writes a unit's marker once it is complete."""

    def __init__(
        self,
        output: str,
        storage: StorageSettings,
        units: list[WorkUnit],
        settings_hash: str,
        encode_dtype: str | None = None,
    ) -> None:
        self.output = output
        self.storage = storage
        self.units = {unit.unit_id: unit for unit in units}
        self.settings_hash = settings_hash
        self.encode_dtype = encode_dtype
        self.pending: dict[str, _Progress] = {}
        self.bytes_written = 0
        self._writes: list[Future[UnitMarker]] = []
        self._pool = ThreadPoolExecutor(MARKER_THREADS, thread_name_prefix="unit-marker")

    @property
    def committed(self) -> int:
        """Units whose marker is written or being written."""
        return len(self._writes)

    def add(self, parts: pa.Table) -> list[str]:
        """Take a block of part records; submit the marker of every unit they complete; return those ids."""
        touched = set()
        for record in parts.to_pylist():
            unit_id = record["unit_id"]
            if unit_id not in self.units:
                raise RuntimeError(f"a part of unit {unit_id}, which this run did not plan")
            state = self.pending.setdefault(unit_id, _Progress())
            touched.add(unit_id)
            name = record["latents_file"] or record["errors_file"]
            if name and name in state.latent_files + state.error_files:
                # Part names derive from their rows' keys: the same part twice is one write retried.
                log.warning("part %s of unit %s arrived twice; counted once", name, unit_id)
                continue
            if record["unit_samples"] >= 0:
                state.samples = record["unit_samples"]
            for index, yields, here in zip(
                record["sample_index"], record["sample_rows"], record["rows_here"], strict=True
            ):
                state.expected[index] = yields
                state.seen[index] += here
            if record["latents_file"]:
                state.latent_files.append(record["latents_file"])
            if record["errors_file"]:
                state.error_files.append(record["errors_file"])
            state.clips += record["clips"]
            state.reasons.update(json.loads(record["error_reasons"]))
            state.sums = state.sums.merge(ChannelSums.model_validate_json(record["sums"]))
            self.bytes_written += record["bytes_written"]
        completed = sorted(u for u in touched if self.pending[u].complete())
        for unit_id in completed:
            state = self.pending.pop(unit_id)
            self._writes.append(self._pool.submit(self._write_marker, unit_id, state))
        return completed

    def finish(self) -> list[UnitMarker]:
        """Wait for every marker; raises if a unit never completed (rows lost) or a write failed."""
        self._pool.shutdown(wait=True)
        markers = [f.result() for f in self._writes]
        if self.pending:
            raise RuntimeError(f"units left incomplete: {sorted(self.pending)}")
        return markers

    def _write_marker(self, unit_id: str, state: _Progress) -> UnitMarker:
        errors = sum(state.reasons.values())
        marker = UnitMarker(
            unit_id=unit_id,
            sources=self.units[unit_id].sources(),
            settings_hash=self.settings_hash,
            samples=len(state.expected),
            clips=state.clips,
            errors=errors,
            errors_by_reason=dict(sorted(state.reasons.items())),
            sums=state.sums,
            latent_files=sorted(state.latent_files),
            error_files=sorted(state.error_files),
            encode_dtype=self.encode_dtype,
        )
        write_marker(self.output, marker, self.storage)  # last: the unit counts as done only now
        log.info("unit %s: %d clips, %d errors", unit_id, marker.clips, marker.errors)
        return marker
