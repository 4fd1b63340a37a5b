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

import gzip
import json
import logging
import posixpath

from pydantic import BaseModel, Field

from model.storage import StorageSettings, open_fs
from pipeline.storage import atomic_write, file_version, is_local, join_uri

log = logging.getLogger(__name__)

__all__ = [
    "ChannelSums",
    "UnitMarker",
    "committed_files",
    "delete_unit",
    "load_markers",
    "index_uri",
    "marker_uri",
    "part_name",
    "remove_orphans",
    "stats_uri",
    "summary_uri",
    "write_index",
    "write_json",
    "write_marker",
]

LATENTS_DIR = "latents"
ERRORS_DIR = "errors"
MANIFEST_DIR = "_manifest"
STATS_FILE = "latent_stats.json"
SUMMARY_FILE = "summary.json"
PARQUET = ".parquet"
MARKER_SUFFIX = ".json"
INDEX_FILE = "_index.json.gz"  # in _manifest/; not a marker (its name does not end in .json)


def part_name(unit_id: str, digest: str) -> str:
    """A part file's name: its unit, then a digest of its rows' keys."""
    return f"{unit_id}.{digest}{PARQUET}"


def _unit_of(name: str) -> str:
    return name.split(".", 1)[0]


def marker_uri(output: str, unit_id: str) -> str:
    return join_uri(output, MANIFEST_DIR, f"{unit_id}{MARKER_SUFFIX}")


def index_uri(output: str) -> str:
    return join_uri(output, MANIFEST_DIR, INDEX_FILE)


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
    encode_dtype: str | None = Field(
        default=None, description="the dtype the unit was encoded in (None: not recorded, older runs)"
    )

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
    return {name: path for name, (path, _) in _versions(output, folder, suffix, storage).items()}


def _versions(
    output: str, folder: str, suffix: str, storage: StorageSettings
) -> dict[str, tuple[str, str]]:
    """File name -> (path, version) of every `*suffix` file under `output/folder`, one listing."""
    fs, path = open_fs(join_uri(output, folder), storage)
    try:
        entries = fs.ls(path, detail=True, **({} if is_local(fs) else {"refresh": True}))
    except FileNotFoundError:
        return {}
    return {
        posixpath.basename(e["name"]): (e["name"], file_version(e))
        for e in entries
        if e["name"].endswith(suffix)
    }


def _read_index(output: str, storage: StorageSettings) -> dict[str, dict[str, object]]:
    fs, path = open_fs(index_uri(output), storage)
    try:
        return json.loads(gzip.decompress(fs.cat_file(path)))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:  # a damaged index only costs the markers' GETs
        log.warning("ignoring the manifest index %s: %s", index_uri(output), error)
        return {}


def load_markers(output: str, storage: StorageSettings) -> dict[str, UnitMarker]:
    """Every finished unit's marker under `output`, by unit id.

    The listing of `_manifest/` says which units are finished and each marker's version; the
    compacted index (`_manifest/_index.json.gz`, written at the end of a run) gives the content
    of every marker whose version it recorded; the others (units finished after it was written,
    or redone) are fetched concurrently (fsspec's async `cat`), not one GET after another. The
    index is only a cache: a marker not listed is not finished, whatever the index says."""
    fs, _ = open_fs(output, storage)
    listed = {
        name[: -len(MARKER_SUFFIX)]: entry
        for name, entry in _versions(output, MANIFEST_DIR, MARKER_SUFFIX, storage).items()
    }
    if not listed:
        return {}
    index = _read_index(output, storage)
    markers = {}
    missing = []
    for unit_id, (path, version) in listed.items():
        entry = index.get(unit_id)
        if entry is not None and entry.get("version") == version:
            markers[unit_id] = UnitMarker.model_validate(entry["marker"])
        else:
            missing.append(path)
    if missing:
        contents = fs.cat(sorted(missing))  # path -> bytes
        for data in contents.values():
            marker = UnitMarker.model_validate_json(data)
            markers[marker.unit_id] = marker
    return dict(sorted(markers.items()))


def write_index(output: str, markers: dict[str, UnitMarker], storage: StorageSettings) -> None:
    """Compact `markers` (all finished units) into `_manifest/_index.json.gz` with the versions
    the listing shows now, so the next plan reads one object instead of one per unit."""
    listed = _versions(output, MANIFEST_DIR, MARKER_SUFFIX, storage)
    index = {
        unit_id: {"version": listed[f"{unit_id}{MARKER_SUFFIX}"][1], "marker": marker.model_dump()}
        for unit_id, marker in markers.items()
        if f"{unit_id}{MARKER_SUFFIX}" in listed
    }
    atomic_write(index_uri(output), gzip.compress(json.dumps(index).encode(), 6), storage)


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
