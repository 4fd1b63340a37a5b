"""The pipeline's storage work through fsspec (`model.storage` opens the filesystems): input expansion (globs, brace ranges, folders, lists), versions, atomic writes."""

from __future__ import annotations

import itertools
import os
import posixpath
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.storage import StorageSettings, open_fs

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "InputListing",
    "atomic_write",
    "expand_braces",
    "expand_inputs",
    "expand_folder",
    "file_version",
    "full_uri",
    "is_local",
    "is_input_file",
    "join_uri",
    "list_inputs",
    "normalize_uri",
    "read_input_list",
]

GLOB_CHARS = re.compile(r"[*?\[]")
# The input kinds, by file ending (pipeline.sources reads them). A folder given as input stands
# for the files under it with these endings; sidecar captions are found beside their videos.
# Videos: every container FFmpeg reads that people store video in (README: decoders and containers).
VIDEO_EXTENSIONS = (
    ".mp4", ".m4v", ".mov", ".qt", ".3gp", ".3g2", ".mkv", ".webm", ".avi", ".flv", ".f4v",
    ".ts", ".m2ts", ".mts", ".mpg", ".mpeg", ".vob", ".wmv", ".asf", ".ogv", ".mxf",
)  # fmt: skip
CAPTION_EXTENSION = ".txt"
TAR_EXTENSIONS = (".tar",)
TABLE_EXTENSIONS = (".csv", ".parquet", ".tsv")
INPUT_SUFFIXES = TAR_EXTENSIONS + TABLE_EXTENSIONS + VIDEO_EXTENSIONS
BRACE = re.compile(r"\{([^{}]*)\}")
NUMERIC_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")


def is_local(fs: AbstractFileSystem) -> bool:
    """True for the local filesystem, where rename is atomic and objects are files."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def full_uri(fs: AbstractFileSystem, path: str) -> str:
    """A path within `fs` back to a URI (`s3://…`, or a plain absolute path for local files)."""
    return os.path.abspath(path) if is_local(fs) else fs.unstrip_protocol(path)


def normalize_uri(uri: str) -> str:
    """`file:///x` and relative local paths to absolute paths; other URIs unchanged."""
    if uri.startswith("file://"):
        return os.path.abspath(uri[len("file://") :])
    return uri if "://" in uri else os.path.abspath(uri)


def join_uri(base: str, *parts: str) -> str:
    """`base/part/...` for URIs and local paths alike."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def expand_braces(pattern: str) -> list[str]:
    """Expand `{00000..00099}` (zero-padded ranges) and `{a,b,c}` alternatives, left to right."""
    match = BRACE.search(pattern)
    if match is None:
        return [pattern]
    body = match.group(1)
    numeric = NUMERIC_RANGE.match(body)
    if numeric:
        lo, hi = int(numeric.group(1)), int(numeric.group(2))
        width = len(numeric.group(1)) if numeric.group(1).startswith("0") else 0
        step = 1 if hi >= lo else -1
        choices = [str(n).zfill(width) for n in range(lo, hi + step, step)]
    else:
        choices = body.split(",")
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return list(itertools.chain.from_iterable(expand_braces(head + c + tail) for c in choices))


def read_input_list(uri: str, storage: StorageSettings) -> list[str]:
    """URIs listed one per line in a text file (blank lines and `#` comments skipped)."""
    fs, path = open_fs(uri, storage)
    text = fs.cat_file(path).decode("utf-8")
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _maybe_folder(uri: str, storage: StorageSettings) -> bool:
    """A trailing slash, or no input file ending and a folder (prefix) there: one lookup at most."""
    if uri.endswith("/"):
        return True
    if uri.lower().endswith(INPUT_SUFFIXES):
        return False  # a file by its name: no request (brace ranges may name 100,000 of them)
    fs, path = open_fs(uri, storage)
    return bool(fs.isdir(path))


def _list_folder(uri: str, storage: StorageSettings) -> list[str]:
    """Every file under a folder or prefix, at any depth, sorted."""
    fs, path = open_fs(uri.rstrip("/") or uri, storage)
    fs.invalidate_cache()
    try:
        names = fs.find(path)
    except FileNotFoundError:
        return []
    return sorted(full_uri(fs, name) for name in names)


def is_input_file(uri: str) -> bool:
    """True for a file ending the pipeline reads: a tar shard, a video, a table of URIs."""
    return uri.lower().endswith(INPUT_SUFFIXES)


def expand_folder(uri: str, storage: StorageSettings) -> list[str]:
    """Every input file (tar shards, videos, tables of URIs) under a folder or prefix, sorted."""
    return [name for name in _list_folder(uri, storage) if is_input_file(name)]


@dataclass(frozen=True)
class InputListing:
    """Every input URI, in order, and the files under the folders given that are no input."""

    inputs: list[str]
    not_taken: list[str]  # sorted; captions beside videos are taken


def list_inputs(
    inputs: list[str], storage: StorageSettings, input_lists: list[str] | tuple[str, ...] = ()
) -> InputListing:
    """Every input URI, in order: braces and globs expanded, folders listed, list files read.

    A folder or prefix (`s3://bucket/webvid/`, a local directory) stands for every input file
    under it, at any depth, as Ray Data's readers take a folder; the other files found there
    are listed as not taken, except each video's `.txt` caption."""
    patterns = list(inputs)
    for list_uri in input_lists:
        patterns.extend(read_input_list(list_uri, storage))
    found: dict[str, None] = {}  # ordered set
    others: set[str] = set()
    for pattern in patterns:
        for candidate in expand_braces(pattern):
            if GLOB_CHARS.search(candidate):
                fs, path = open_fs(candidate, storage)
                fs.invalidate_cache()  # fsspec instances are cached, listings with them
                for hit in sorted(fs.glob(path)):
                    found[full_uri(fs, hit)] = None
            elif _maybe_folder(candidate, storage):
                for name in _list_folder(candidate, storage):
                    if is_input_file(name):
                        found[name] = None
                    else:
                        others.add(name)
            else:
                found[normalize_uri(candidate)] = None
    captions = {
        posixpath.splitext(u)[0] + CAPTION_EXTENSION
        for u in found
        if u.lower().endswith(VIDEO_EXTENSIONS)
    }
    return InputListing(list(found), sorted(others - captions - set(found)))


def expand_inputs(
    inputs: list[str], storage: StorageSettings, input_lists: list[str] | tuple[str, ...] = ()
) -> list[str]:
    """Every input URI, in order (`list_inputs`)."""
    return list_inputs(inputs, storage, input_lists).inputs


def file_version(info: Mapping[str, object]) -> str:
    """A version string from an fsspec `info()` entry: version id, ETag, generation, or mtime+size.

    GCS objects carry both a generation and an etag; the generation changes only when the bytes
    are rewritten, the etag on metadata updates too, so the generation is taken.
    """
    for field in ("VersionId", "ETag", "generation", "etag", "md5Hash"):
        value = info.get(field)
        if value:
            return str(value).strip('"')
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated") or ""
    return f"{mtime}-{info.get('size', '')}"


def atomic_write(uri: str, data: bytes, storage: StorageSettings) -> None:
    """Write `data` so that readers see the old object or the whole new one, never a part.

    Local files: write a temporary sibling, then rename over the target (atomic on POSIX).
    Object stores: one PUT (or a multipart upload) becomes visible only once complete, so the
    object is written in place; a copy from a temporary key would double the traffic for nothing.
    """
    fs, path = open_fs(uri, storage)
    if is_local(fs):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    else:
        fs.pipe_file(path, data)
