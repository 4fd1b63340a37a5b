"""Driver-side commit of text units: add up the text part records, and once every clip of a unit
has its text row on storage, write the unit's text marker (as `pipeline.committer` does for
latents; the driver sees no embedding)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa

from model.storage import StorageSettings
from pipeline.manifest import LATENTS_DIR, UnitMarker
from pipeline.text.layout import TextUnitMarker, write_text_marker

log = logging.getLogger(__name__)

__all__ = ["TextCommitter"]

MARKER_THREADS = 4


@dataclass
class _Progress:
    rows: int = 0
    embedded: int = 0
    nulls: int = 0
    tokens: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    embedding_files: dict[str, list[str]] = field(default_factory=dict)
    error_files: list[str] = field(default_factory=list)


class TextCommitter:
    """Takes text part records (`TEXT_PART_SCHEMA`); writes a unit's text marker once the unit's
    clips (its latent marker's count) all have their rows."""

    def __init__(
        self,
        prefix: str,
        storage: StorageSettings,
        latent_markers: list[UnitMarker],
        text_dtype: str,
    ) -> None:
        self.prefix = prefix
        self.storage = storage
        self.units = {m.unit_id: m for m in latent_markers}
        self.text_dtype = text_dtype
        self.pending: dict[str, _Progress] = {}
        self.bytes_written = 0
        self._seen: set[tuple[str, str]] = set()  # (embedding or error file, latent part)
        self._writes: list[Future[TextUnitMarker]] = []
        self._pool = ThreadPoolExecutor(MARKER_THREADS, thread_name_prefix="text-marker")

    @property
    def committed(self) -> int:
        return len(self._writes)

    def add(self, parts: pa.Table) -> list[str]:
        """Take a block of part records; submit the marker of every unit they complete."""
        touched = set()
        for record in parts.to_pylist():
            unit_id = record["unit_id"]
            if unit_id not in self.units:
                raise RuntimeError(f"a text part of unit {unit_id}, which this run did not plan")
            name = record["embedding_file"] or record["error_file"]
            if (name, record["latent_file"]) in self._seen:  # one write retried: named by its keys
                log.warning("text part %s arrived twice; counted once", name)
                continue
            self._seen.add((name, record["latent_file"]))
            state = self.pending.setdefault(unit_id, _Progress())
            touched.add(unit_id)
            state.rows += record["rows"]
            state.embedded += record["embedded"]
            state.nulls += record["nulls"]
            state.tokens += record["tokens"]
            state.reasons.update(json.loads(record["error_reasons"]))
            if record["embedding_file"]:
                files = state.embedding_files.setdefault(record["latent_file"], [])
                files.append(record["embedding_file"])
            if record["error_file"]:
                state.error_files.append(record["error_file"])
            self.bytes_written += record["bytes_written"]
        completed = sorted(u for u in touched if self.pending[u].rows == self.units[u].clips)
        for unit_id in completed:
            state = self.pending.pop(unit_id)
            self._writes.append(self._pool.submit(self._write_marker, unit_id, state))
        return completed

    def finish(self) -> list[TextUnitMarker]:
        """Wait for every marker; raises if a unit never completed or a write failed."""
        self._pool.shutdown(wait=True)
        markers = [f.result() for f in self._writes]
        if self.pending:
            raise RuntimeError(f"text units left incomplete: {sorted(self.pending)}")
        return markers

    def _write_marker(self, unit_id: str, state: _Progress) -> TextUnitMarker:
        marker = TextUnitMarker(
            unit_id=unit_id,
            latent_files=sorted(self.units[unit_id].files(LATENTS_DIR)),
            embedding_files={k: sorted(v) for k, v in sorted(state.embedding_files.items())},
            error_files=sorted(state.error_files),
            rows=state.rows,
            embedded=state.embedded,
            nulls=state.nulls,
            errors=sum(state.reasons.values()),
            errors_by_reason=dict(sorted(state.reasons.items())),
            tokens=state.tokens,
            text_dtype=self.text_dtype,
        )
        write_text_marker(self.prefix, marker, self.storage)
        log.info(
            "text unit %s: %d embedded, %d without caption, %d errors",
            unit_id, marker.embedded, marker.nulls, marker.errors,
        )  # fmt: skip
        return marker
