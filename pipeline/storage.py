"""Object storage through fsspec: filesystems, input expansion (globs, brace ranges, folders, lists), atomic writes."""

from __future__ import annotations

import itertools
import os
import posixpath
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "InputListing",
    "StorageSettings",
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
    "open_fs",
    "protocol_of",
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
S3_PROTOCOLS = ("s3", "s3a")
GCS_PROTOCOLS = ("gs", "gcs")


class StorageSettings(BaseModel):
    """How to reach object storage; credentials come from the standard AWS/GCP environment and files.

    Each protocol has its own endpoint, so one run may read from S3 and write to GCS. `options`
    goes to every filesystem as is.
    """

    model_config = ConfigDict(extra="forbid")

    endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (else AWS_ENDPOINT_URL or AWS's default)"
    )
    gcs_endpoint_url: str | None = Field(
        default=None,
        description="GCS JSON API endpoint for gs:// (else STORAGE_EMULATOR_HOST or Google's)",
    )
    gcs_token: str | None = Field(
        default=None,
        description=(
            "gcsfs token for gs://: a service-account or authorized-user JSON file, "
            "google_default, cloud or anon; default: Google's standard chain "
            "(GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default login, the metadata "
            "server), or anonymous where an endpoint (an emulator) is given"
        ),
    )
    anon: bool = Field(default=False, description="anonymous access to public buckets")
    options: dict[str, Any] = Field(
        default_factory=dict, description="extra fsspec options, passed to the filesystem as is"
    )

    def fs_options(self, protocol: str) -> dict[str, Any]:
        """fsspec keyword arguments for `protocol`."""
        options = dict(self.options)
        if protocol in S3_PROTOCOLS:
            if self.endpoint_url:
                options["endpoint_url"] = self.endpoint_url
            if self.anon:
                options["anon"] = True
        elif protocol in GCS_PROTOCOLS:
            if self.gcs_endpoint_url:
                options["endpoint_url"] = self.gcs_endpoint_url
            if self.anon:
                options["token"] = "anon"
            elif self.gcs_token:
                options["token"] = self.gcs_token
            elif "token" not in options and _own_gcs_endpoint(options):
                # As Google's own client does with STORAGE_EMULATOR_HOST: no credentials are
                # looked for (nor the metadata server probed) for an endpoint of one's own.
                options["token"] = "anon"
        return options


def _own_gcs_endpoint(options: dict[str, Any]) -> str | None:
    """The endpoint other than Google's that gs:// goes to, if any: gcsfs's `endpoint_url`, else
    STORAGE_EMULATOR_HOST ("" and "default" there mean Google's, as gcsfs reads it)."""
    host = os.environ.get("STORAGE_EMULATOR_HOST", "")
    return options.get("endpoint_url") or (None if host in ("", "default") else host)


def protocol_of(uri: str) -> str:
    """`s3` for `s3://b/k`, `file` for local paths."""
    return uri.split("://", 1)[0] if "://" in uri else "file"


def open_fs(uri: str, storage: StorageSettings) -> tuple[Any, str]:
    """The fsspec filesystem holding `uri` and the path within it."""
    import fsspec

    protocol = protocol_of(uri)
    options = storage.fs_options(protocol)
    if protocol in GCS_PROTOCOLS and _own_gcs_endpoint(options):
        # gcsfs registers ExtendedGcsFileSystem for gs://, which first asks Google's gRPC Storage
        # Control API for each bucket's layout (zonal, hierarchical). An endpoint of one's own (an
        # emulator, a GCS-compatible store) speaks only the JSON API: the lookup runs into its
        # 60 s timeout, and a failed lookup is not cached, so every call would wait that long.
        # The JSON-API filesystem underneath does all the pipeline needs.
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(**options), GCSFileSystem._strip_protocol(uri)
    return fsspec.core.url_to_fs(uri, **options)


def is_local(fs: Any) -> bool:
    """True for the local filesystem, where rename is atomic and objects are files."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocols or "local" in protocols


def full_uri(fs: Any, path: str) -> str:
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


def file_version(info: dict[str, Any]) -> str:
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
