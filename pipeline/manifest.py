"""The output prefix's layout and manifest: one marker per finished unit, written after its Parquet files."""

from __future__ import annotations

import json
import logging
import posixpath

from pydantic import BaseModel, Field

from pipeline.storage import StorageSettings, atomic_write, is_local, join_uri, open_fs

log = logging.getLogger(__name__)

__all__ = [
    "ChannelSums",
    "UnitMarker",
    "delete_unit",
    "errors_uri",
    "latents_uri",
    "load_markers",
    "marker_uri",
    "remove_orphans",
    "stats_uri",
    "summary_uri",
    "write_json",
    "write_marker",
]

LATENTS_DIR = "latents"
ERRORS_DIR = "errors"
MANIFEST_DIR = "_manifest"
STATS_FILE = "latent_stats.json"
SUMMARY_FILE = "summary.json"


def latents_uri(output: str, unit_id: str) -> str:
    return join_uri(output, LATENTS_DIR, f"{unit_id}.parquet")


def errors_uri(output: str, unit_id: str) -> str:
    return join_uri(output, ERRORS_DIR, f"{unit_id}.parquet")


def marker_uri(output: str, unit_id: str) -> str:
    return join_uri(output, MANIFEST_DIR, f"{unit_id}.json")


class ChannelSums(BaseModel):
    """Per-channel sums over latent elements, the mergeable form of mean and std."""

    count: list[int] = Field(default_factory=list)
    total: list[float] = Field(default_factory=list)
    squares: list[float] = Field(default_factory=list)

    def merge(self, other: ChannelSums) -> ChannelSums:
        if not self.count:
            return other.model_copy()
        if not other.count:
            return self.model_copy()
        if len(self.count) != len(other.count):
            raise ValueError(f"channel counts differ: {len(self.count)} vs {len(other.count)}")
        return ChannelSums(
            count=[a + b for a, b in zip(self.count, other.count, strict=True)],
            total=[a + b for a, b in zip(self.total, other.total, strict=True)],
            squares=[a + b for a, b in zip(self.squares, other.squares, strict=True)],
        )


class UnitMarker(BaseModel):
    """What the manifest records for a finished unit."""

    unit_id: str
    sources: dict[str, str]  # source URI -> version
    settings_hash: str
    samples: int
    clips: int
    errors: int
    errors_by_reason: dict[str, int] = Field(default_factory=dict)
    sums: ChannelSums = Field(default_factory=ChannelSums)

    def done_sources(self) -> set[str]:
        return {f"{uri}@{version}" for uri, version in self.sources.items()}


def write_marker(output: str, marker: UnitMarker, storage: StorageSettings) -> None:
    atomic_write(marker_uri(output, marker.unit_id), marker.model_dump_json().encode(), storage)


def _list(output: str, folder: str, suffix: str, storage: StorageSettings) -> dict[str, str]:
    """unit id -> path of every `*suffix` file under `output/folder`."""
    fs, path = open_fs(join_uri(output, folder), storage)
    try:
        names = (
            fs.ls(path, detail=False, refresh=True)
            if not is_local(fs)
            else fs.ls(path, detail=False)
        )
    except FileNotFoundError:
        return {}
    return {
        posixpath.basename(name)[: -len(suffix)]: name for name in names if name.endswith(suffix)
    }


def load_markers(output: str, storage: StorageSettings) -> dict[str, UnitMarker]:
    """Every finished unit's marker under `output`, by unit id."""
    fs, _ = open_fs(output, storage)
    markers = {}
    for unit_id, path in sorted(_list(output, MANIFEST_DIR, ".json", storage).items()):
        markers[unit_id] = UnitMarker.model_validate_json(fs.cat_file(path))
    return markers


def delete_unit(output: str, unit_id: str, storage: StorageSettings) -> None:
    """Remove a unit's marker first, then its files (a crash in between leaves orphans, not lies)."""
    for uri in (
        marker_uri(output, unit_id),
        latents_uri(output, unit_id),
        errors_uri(output, unit_id),
    ):
        fs, path = open_fs(uri, storage)
        if fs.exists(path):
            fs.rm_file(path)


def remove_orphans(output: str, finished: set[str], storage: StorageSettings) -> list[str]:
    """Delete Parquet files of units with no marker (a run stopped between writing files and marker)."""
    removed = []
    for folder in (LATENTS_DIR, ERRORS_DIR):
        for unit_id, path in _list(output, folder, ".parquet", storage).items():
            if unit_id not in finished:
                fs, _ = open_fs(output, storage)
                fs.rm_file(path)
                removed.append(unit_id)
    if is_local(open_fs(output, storage)[0]):  # temporaries of an interrupted local write
        fs, path = open_fs(output, storage)
        for leftover in fs.glob(join_uri(path, "*", "*.tmp-*")):
            fs.rm_file(leftover)
    if removed:
        log.info(
            "removed files of %d unfinished units: %s", len(set(removed)), sorted(set(removed))
        )
    return sorted(set(removed))


def summary_uri(output: str) -> str:
    return join_uri(output, SUMMARY_FILE)


def stats_uri(output: str) -> str:
    return join_uri(output, STATS_FILE)


def write_json(uri: str, value: object, storage: StorageSettings) -> None:
    atomic_write(uri, json.dumps(value, indent=2, sort_keys=True).encode(), storage)
