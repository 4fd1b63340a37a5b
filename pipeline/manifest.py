"""The output prefix's layout and manifest: one marker per finished unit, listing its Parquet part files.

    <output>/latents/<unit>.<digest>.parquet    clip rows of one unit, one file per write batch
    <output>/errors/<unit>.<digest>.parquet     error rows, likewise (only where there are any)
    <output>/_manifest/<unit>.json              the unit's marker, written once all its parts are

A part belongs to its unit once the marker lists it; files no marker lists are leftovers of an
interrupted run (or of a retried write) and are removed by the next run. Unit ids never hold a
dot, so a part's unit is the text before its first dot. Markers written before part files
(no file lists) stand for `latents/<unit>.parquet` and `errors/<unit>.parquet`.
"""

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
    "committed_files",
    "delete_unit",
    "load_markers",
    "marker_uri",
    "part_name",
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
PARQUET = ".parquet"


def part_name(unit_id: str, digest: str) -> str:
    """A part file's name: its unit, then a digest of its rows' keys."""
    return f"{unit_id}.{digest}{PARQUET}"


def _unit_of(name: str) -> str:
    return name.split(".", 1)[0]


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
    latent_files: list[str] | None = Field(
        default=None, description="part files under latents/ (None: a marker of one file a unit)"
    )
    error_files: list[str] | None = Field(default=None, description="part files under errors/")

    def done_sources(self) -> set[str]:
        return {f"{uri}@{version}" for uri, version in self.sources.items()}

    def files(self, folder: str) -> list[str]:
        """The unit's file names under `folder` (LATENTS_DIR or ERRORS_DIR)."""
        listed = self.latent_files if folder == LATENTS_DIR else self.error_files
        return list(listed) if listed is not None else [f"{self.unit_id}{PARQUET}"]


def write_marker(output: str, marker: UnitMarker, storage: StorageSettings) -> None:
    atomic_write(marker_uri(output, marker.unit_id), marker.model_dump_json().encode(), storage)


def _listing(output: str, folder: str, suffix: str, storage: StorageSettings) -> dict[str, str]:
    """File name -> path of every `*suffix` file under `output/folder` (fresh, not cached)."""
    fs, path = open_fs(join_uri(output, folder), storage)
    try:
        names = (
            fs.ls(path, detail=False, refresh=True)
            if not is_local(fs)
            else fs.ls(path, detail=False)
        )
    except FileNotFoundError:
        return {}
    return {posixpath.basename(n): n for n in names if n.endswith(suffix)}


def load_markers(output: str, storage: StorageSettings) -> dict[str, UnitMarker]:
    """Every finished unit's marker under `output`, by unit id.

    Object stores: one listing, then the markers fetched concurrently (fsspec's async `cat`),
    not one GET after another."""
    fs, _ = open_fs(output, storage)
    paths = {
        name[: -len(".json")]: path
        for name, path in _listing(output, MANIFEST_DIR, ".json", storage).items()
    }
    if not paths:
        return {}
    contents = fs.cat(sorted(paths.values()))  # path -> bytes
    return {
        unit_id: UnitMarker.model_validate_json(contents[path])
        for unit_id, path in sorted(paths.items())
    }


def _read_marker(output: str, unit_id: str, storage: StorageSettings) -> UnitMarker | None:
    fs, path = open_fs(marker_uri(output, unit_id), storage)
    try:
        return UnitMarker.model_validate_json(fs.cat_file(path))
    except FileNotFoundError:
        return None


def delete_unit(output: str, unit_id: str, storage: StorageSettings) -> None:
    """Remove a unit's marker first, then its files (a crash in between leaves orphans, not lies)."""
    marker = _read_marker(output, unit_id, storage)
    if marker is None:
        return
    uris = [marker_uri(output, unit_id)] + [
        join_uri(output, folder, name)
        for folder in (LATENTS_DIR, ERRORS_DIR)
        for name in marker.files(folder)
    ]
    for uri in uris:
        fs, path = open_fs(uri, storage)
        if fs.exists(path):
            fs.rm_file(path)


def committed_files(
    output: str,
    storage: StorageSettings,
    folder: str = LATENTS_DIR,
    markers: dict[str, UnitMarker] | None = None,
) -> list[str]:
    """URIs of the committed part files under `output/folder`, sorted: what readers should read."""
    markers = load_markers(output, storage) if markers is None else markers
    names = {name for marker in markers.values() for name in marker.files(folder)}
    return sorted(join_uri(output, folder, name) for name in names)


def remove_orphans(
    output: str, markers: dict[str, UnitMarker], storage: StorageSettings
) -> list[str]:
    """Delete Parquet files no marker lists: parts of unfinished units, or of a retried write."""
    removed = []
    fs, _ = open_fs(output, storage)
    for folder in (LATENTS_DIR, ERRORS_DIR):
        listed = {name for marker in markers.values() for name in marker.files(folder)}
        stray = [
            p
            for name, p in _listing(output, folder, PARQUET, storage).items()
            if name not in listed
        ]
        if stray:
            fs.rm(stray)
        removed.extend(_unit_of(posixpath.basename(p)) for p in stray)
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
