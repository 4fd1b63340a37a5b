"""Input discovery and streaming reads: WebDataset tars, plain video files, and tables of video URIs."""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import tarfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from model.storage import StorageSettings, open_fs, protocol_of
from pipeline.storage import (
    TABLE_EXTENSIONS,
    TAR_EXTENSIONS,
    VIDEO_EXTENSIONS,
    file_version,
    full_uri,
    is_input_file,
    normalize_uri,
)

log = logging.getLogger(__name__)

__all__ = [
    "InputsNotTaken",
    "Item",
    "NoInputsError",
    "Sample",
    "SampleError",
    "WorkUnit",
    "group_items",
    "iter_file_samples",
    "iter_tar_samples",
    "inputs_not_taken",
    "iter_unit_samples",
    "list_sources",
]

URI_COLUMNS = ("uri", "url", "contentUrl", "path", "video", "video_path")
CAPTION_COLUMNS = ("caption", "text", "name", "title")
KEY_COLUMNS = ("key", "videoid", "id")
HEAD_THREADS = 16  # concurrent HEADs where a folder is not listed
LIST_FOLDER_FROM = 8  # files named in one folder from which listing it beats a HEAD each
TAR_READ_BLOCK = 8 * 2**20  # bytes fetched per request while streaming a tar from object storage
NOT_TAKEN_NAMED = 20  # files not taken named in the log and summary.json (all are counted)


class InputsNotTaken(BaseModel):
    """Files under the inputs that are no input (no video, tar or table ending), counted by
    ending, the first of them named: nothing under an input goes unaccounted."""

    count: int = 0
    by_extension: dict[str, int] = Field(default_factory=dict)  # ".json": 3, "(none)": 1
    named: list[str] = Field(
        default_factory=list, description=f"the first {NOT_TAKEN_NAMED}, sorted"
    )

    @classmethod
    def of(cls, uris: list[str]) -> InputsNotTaken:
        endings: dict[str, int] = {}
        for uri in uris:
            ending = posixpath.splitext(uri)[1].lower() or "(none)"
            endings[ending] = endings.get(ending, 0) + 1
        return cls(
            count=len(uris),
            by_extension=dict(sorted(endings.items())),
            named=sorted(uris)[:NOT_TAKEN_NAMED],
        )

    def describe(self) -> str:
        endings = ", ".join(f"{n} {e}" for e, n in self.by_extension.items())
        more = f" and {self.count - len(self.named)} more" if self.count > len(self.named) else ""
        return f"{self.count} files under the inputs are no video, tar or table ({endings}): {', '.join(self.named)}{more}"


def inputs_not_taken(listed_others: list[str], named: list[str]) -> InputsNotTaken:
    """Files found under input folders that are no input, and inputs named whose ending no
    reader takes (`list_sources` skips them), together."""
    return InputsNotTaken.of(
        sorted(set(listed_others) | {u for u in named if not is_input_file(u)})
    )


class NoInputsError(ValueError):
    """The inputs named nothing to encode: no shard, video or table matched them."""

    def __init__(self, inputs: list[str]) -> None:
        super().__init__(
            f"no input matched {inputs}: no tar shard, video file or table of URIs there "
            f"(a folder stands for the files under it ending in "
            f"{', '.join(TAR_EXTENSIONS + TABLE_EXTENSIONS + VIDEO_EXTENSIONS)})"
        )
        self.inputs = inputs


@dataclass(frozen=True)
class Item:
    """One video addressed directly: its URI, caption, version and member key."""

    uri: str
    key: str
    caption: str = ""
    version: str = ""


@dataclass(frozen=True)
class WorkUnit:
    """The unit of work, output file and manifest entry: one tar shard, or a group of video files."""

    unit_id: str
    kind: Literal["tar", "files"]
    shard: str  # the tar's URI, or "" for a group of files
    version: str = ""  # the tar's version (ETag, generation or mtime-size)
    items: tuple[Item, ...] = field(default_factory=tuple)

    def sources(self) -> dict[str, str]:
        """Source URI -> version, as recorded in the manifest."""
        if self.kind == "tar":
            return {self.shard: self.version}
        return {item.uri: item.version for item in self.items}

    def to_row(self) -> dict[str, str]:
        """A JSON row for Ray (`from_items`)."""
        return {"unit": json.dumps(_unit_to_dict(self))}

    @staticmethod
    def from_row(row: dict[str, Any]) -> WorkUnit:
        data = json.loads(row["unit"])
        return WorkUnit(
            unit_id=data["unit_id"],
            kind=data["kind"],
            shard=data["shard"],
            version=data["version"],
            items=tuple(Item(**item) for item in data["items"]),
        )


def _unit_to_dict(unit: WorkUnit) -> dict[str, Any]:
    return {
        "unit_id": unit.unit_id,
        "kind": unit.kind,
        "shard": unit.shard,
        "version": unit.version,
        "items": [item.__dict__ for item in unit.items],
    }


@dataclass(frozen=True)
class Sample:
    """One video read from a unit, with its caption and metadata."""

    member_key: str
    source_uri: str
    version: str
    video: bytes
    caption: str = ""
    metadata: str = ""  # the WebDataset sample's JSON, as text


@dataclass(frozen=True)
class SampleError:
    """A sample (or a whole shard) that could not be read."""

    member_key: str
    source_uri: str
    version: str
    reason: str
    message: str


def _short_hash(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def _stem(uri: str) -> str:
    name = posixpath.basename(uri.rstrip("/"))
    return name.split(".", 1)[0] or "input"


def _tar_unit(uri: str, info: dict[str, Any]) -> WorkUnit:
    return WorkUnit(
        unit_id=f"{_stem(uri)}-{_short_hash(uri, 8)}",
        kind="tar",
        shard=uri,
        version=file_version(info),
    )


def _info(uri: str, storage: StorageSettings) -> dict[str, Any]:
    fs, path = open_fs(uri, storage)
    return fs.info(path)


def _infos(uris: list[str], storage: StorageSettings) -> dict[str, dict[str, Any]]:
    """fsspec `info()` of each URI: a folder holding many of them is listed once (one LIST per
    1,000 objects on S3) instead of one HEAD per file, one after another.

    A listing is trusted only if it gives the version a HEAD gives (on a versioned S3 bucket a
    HEAD has the VersionId and a LIST not): a changed version would redo finished units."""
    by_folder: dict[str, list[str]] = {}
    for uri in uris:
        by_folder.setdefault(posixpath.dirname(uri), []).append(uri)
    infos: dict[str, dict[str, Any]] = {}
    for folder, members in by_folder.items():
        if len(members) >= LIST_FOLDER_FROM:
            fs, path = open_fs(folder or ".", storage)
            try:
                listed = fs.ls(path, detail=True, refresh=True)
            except FileNotFoundError:
                listed = []
            by_uri = {full_uri(fs, entry["name"]): entry for entry in listed}
            probe = members[0]
            if probe in by_uri:
                head = infos[probe] = _info(probe, storage)
                if file_version(head) == file_version(by_uri[probe]):
                    infos.update({uri: by_uri[uri] for uri in members if uri in by_uri})
        missing = [uri for uri in members if uri not in infos]
        with ThreadPoolExecutor(HEAD_THREADS) as pool:  # raises for a file that is not there
            infos.update(zip(missing, pool.map(lambda u: _info(u, storage), missing), strict=True))
    return infos


def _sidecar_captions(video_uris: list[str], storage: StorageSettings) -> dict[str, str]:
    """Caption text from `{stem}.txt` beside each video, listing each folder once."""
    captions: dict[str, str] = {}
    by_folder: dict[str, list[str]] = {}
    for uri in video_uris:
        by_folder.setdefault(posixpath.dirname(uri), []).append(uri)
    for folder, uris in by_folder.items():
        fs, path = open_fs(folder or ".", storage)
        try:
            present = {full_uri(fs, p) for p in fs.ls(path, detail=False, refresh=True)}
        except FileNotFoundError:
            continue
        for uri in uris:
            sidecar = posixpath.splitext(uri)[0] + ".txt"
            if sidecar in present:
                side_fs, side_path = open_fs(sidecar, storage)
                captions[uri] = side_fs.cat_file(side_path).decode("utf-8", "replace").strip()
    return captions


def _table_items(uri: str, storage: StorageSettings) -> list[Item]:
    """Rows of a CSV/TSV/Parquet table of video URIs (WebVid's `videoid,name,contentUrl` included)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    fs, path = open_fs(uri, storage)
    with fs.open(path, "rb") as handle:
        if uri.endswith(".parquet"):
            table = pq.read_table(handle)
        else:
            delimiter = "\t" if uri.endswith(".tsv") else ","
            table = pacsv.read_csv(handle, parse_options=pacsv.ParseOptions(delimiter=delimiter))
    columns = table.column_names

    def pick(candidates: tuple[str, ...]) -> str | None:
        return next((c for c in candidates if c in columns), None)

    uri_column, caption_column, key_column = (
        pick(URI_COLUMNS),
        pick(CAPTION_COLUMNS),
        pick(KEY_COLUMNS),
    )
    if uri_column is None:
        raise ValueError(f"{uri}: no video URI column (one of {URI_COLUMNS}) in {columns}")
    base = posixpath.dirname(uri)
    items = []
    for row in table.to_pylist():
        video_uri = str(row[uri_column])
        if "://" not in video_uri and not video_uri.startswith("/"):
            video_uri = f"{base}/{video_uri}" if base else video_uri  # relative to the table
        video_uri = normalize_uri(video_uri)
        key = str(row[key_column]) if key_column else _stem(video_uri)
        caption = str(row[caption_column] or "") if caption_column else ""
        items.append(Item(uri=video_uri, key=key, caption=caption))
    return items


def list_sources(uris: list[str], storage: StorageSettings) -> tuple[list[WorkUnit], list[Item]]:
    """Tar shards (one unit each, with versions) and loose videos (from files and tables) among `uris`."""
    tars: list[WorkUnit] = []
    loose: list[Item] = []
    videos: list[tuple[str, dict[str, Any]]] = []
    infos = _infos(
        [u for u in uris if u.lower().endswith(TAR_EXTENSIONS + VIDEO_EXTENSIONS)], storage
    )
    for uri in uris:
        lower = uri.lower()
        if lower.endswith(TAR_EXTENSIONS):
            tars.append(_tar_unit(uri, infos[uri]))
        elif lower.endswith(TABLE_EXTENSIONS):
            loose.extend(_table_items(uri, storage))
        elif lower.endswith(VIDEO_EXTENSIONS):
            videos.append((uri, infos[uri]))
        else:
            log.warning("skipping input of unknown kind: %s (counted in inputs_not_taken)", uri)
    listed = {item.uri for item in loose}  # a table's videos, found again under a folder
    videos = [(uri, info) for uri, info in videos if uri not in listed]
    captions = _sidecar_captions([uri for uri, _ in videos], storage)
    for uri, info in videos:
        loose.append(
            Item(uri=uri, key=_stem(uri), caption=captions.get(uri, ""), version=file_version(info))
        )
    return tars, loose


def group_items(items: list[Item], files_per_unit: int) -> list[WorkUnit]:
    """Loose videos, sorted by URI, in groups of `files_per_unit`; the unit id hashes its members.

    Finished groups leave the pending list whole, so re-grouping what remains after an
    interruption gives the same groups (and file names) again.
    """
    pending = sorted(items, key=lambda item: item.uri)
    units = []
    for start in range(0, len(pending), files_per_unit):
        group = tuple(pending[start : start + files_per_unit])
        ident = _short_hash("\n".join(f"{i.uri}@{i.version}" for i in group))
        units.append(WorkUnit(unit_id=f"files-{ident}", kind="files", shard="", items=group))
    return units


def _member_key(name: str) -> tuple[str, str]:
    """WebDataset convention: the key is the path up to the first dot of the basename."""
    folder, base = posixpath.split(name)
    stem, _, ext = base.partition(".")
    return posixpath.join(folder, stem), ext.lower()


def _sample_from_members(
    key: str, members: dict[str, bytes], shard: str, version: str
) -> Sample | SampleError:
    video_ext = next((e for e in members if f".{e}" in VIDEO_EXTENSIONS), None)
    if video_ext is None:
        return SampleError(key, shard, version, "no_video", f"sample {key} has no video member")
    caption = members.get("txt", b"").decode("utf-8", "replace").strip()
    metadata = members.get("json", b"").decode("utf-8", "replace")
    return Sample(key, shard, version, members[video_ext], caption, metadata)


def iter_tar_samples(unit: WorkUnit, storage: StorageSettings) -> Iterator[Sample | SampleError]:
    """Stream a WebDataset tar member by member, one sample (all files of one key) at a time."""
    fs, path = open_fs(unit.shard, storage)
    current: str | None = None
    members: dict[str, bytes] = {}
    try:
        # Read-ahead in whole blocks: tarfile reads 10 KB at a time, and gcsfs's default
        # ("adaptive") cache turned that into ~1,000 requests for a 26 MB shard.
        block = (
            {}
            if protocol_of(unit.shard) == "file"
            else {"block_size": TAR_READ_BLOCK, "cache_type": "readahead"}
        )
        with (
            fs.open(path, "rb", **block) as handle,
            tarfile.open(fileobj=handle, mode="r|*") as tar,
        ):
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _member_key(member.name)
                if current is not None and key != current:
                    yield _sample_from_members(current, members, unit.shard, unit.version)
                    members = {}
                current = key
                extracted = tar.extractfile(member)
                members[ext] = extracted.read() if extracted else b""
    except Exception as error:  # a missing, unreadable or truncated shard: one error row
        if current is not None and members:
            yield _sample_from_members(current, members, unit.shard, unit.version)
            current = None
        yield SampleError(
            f"{_stem(unit.shard)}:read",
            unit.shard,
            unit.version,
            "shard_unreadable",
            f"{type(error).__name__}: {str(error)[:300]}",
        )
        return
    if current is not None:
        yield _sample_from_members(current, members, unit.shard, unit.version)


def iter_file_samples(unit: WorkUnit, storage: StorageSettings) -> Iterator[Sample | SampleError]:
    """Read each video of a group of files, one at a time."""
    for item in unit.items:
        try:
            fs, path = open_fs(item.uri, storage)
            data = fs.cat_file(path)
        except Exception as error:
            yield SampleError(
                item.key,
                item.uri,
                item.version,
                "unreadable_source",
                f"{type(error).__name__}: {str(error)[:300]}",
            )
            continue
        yield Sample(item.key, item.uri, item.version, data, item.caption)


def iter_unit_samples(unit: WorkUnit, storage: StorageSettings) -> Iterator[Sample | SampleError]:
    """Every sample of a unit, in order, as a Sample or a SampleError."""
    if unit.kind == "tar":
        return iter_tar_samples(unit, storage)
    return iter_file_samples(unit, storage)
