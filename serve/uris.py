"""URI bodies of `/encode`: the allowlist of object-storage prefixes a client may name.

A token holder may read through the service exactly the objects under `allowed_uri_prefixes`
(the service's own credentials reach much more). A URI is checked as text before any storage
call, and every URI the service will not or cannot read (outside the list, an fsspec chain,
a missing object, one the credentials may not read, a bucket name the store rejects) gets the
same answer, so the service tells a client nothing about what exists outside the list.
"""

from __future__ import annotations

from .errors import ObjectUnavailable, URIBodiesOff

__all__ = [
    "MAX_URI_CHARS",
    "OBJECT_STORE_SCHEMES",
    "check_uri",
    "normalize_prefix",
]

# The object stores `model.storage.StorageSettings` knows how to reach. Anything else
# (file://, http://, memory://, fsspec's caching and archive layers) is never a prefix.
OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "gcs")
# S3 keys are at most 1024 bytes, GCS names 1024 bytes, bucket names 63 (S3) or 222 (GCS).
MAX_URI_CHARS = 1400
# fsspec reads `a::b` as "open a through b" (URL chaining), e.g. `s3://b/k::file:///etc/passwd`.
FSSPEC_CHAIN = "::"


def _scheme_and_path(uri: str) -> tuple[str, str]:
    scheme, separator, path = uri.partition("://")
    return (scheme.lower(), path) if separator else ("", uri)


def _unsafe(uri: str) -> str | None:
    """Why `uri` is not a plain object URI (None if it is one)."""
    if len(uri) > MAX_URI_CHARS:
        return f"longer than {MAX_URI_CHARS} characters"
    if FSSPEC_CHAIN in uri:
        return "an fsspec chain ('::')"
    if not uri.isprintable() or "\\" in uri:
        return "control characters or backslashes"
    scheme, path = _scheme_and_path(uri)
    if scheme not in OBJECT_STORE_SCHEMES:
        return f"not an object-storage URI ({', '.join(OBJECT_STORE_SCHEMES)})"
    bucket, _, key = path.partition("/")
    if not bucket or any(part in {"", ".", ".."} for part in key.split("/")[:-1]):
        return "empty, '.' or '..' path segments"
    return None


def normalize_prefix(prefix: str) -> str:
    """A configured prefix as `scheme://bucket/folder/` (a trailing `/` added: a prefix names a
    bucket or a folder, so `s3://b/videos` does not also allow `s3://b/videos-private/`).

    Raises ValueError for a prefix that is not a plain object-storage bucket or folder.
    """
    normalized = prefix if prefix.endswith("/") else prefix + "/"
    problem = _unsafe(normalized + "x")
    if problem is not None:
        raise ValueError(f"allowed URI prefix {prefix!r} is {problem}")
    return normalized


def check_uri(uri: str, prefixes: list[str]) -> str:
    """`uri` if a client may have it read: under one of `prefixes` (normalized) and plain.

    Raises URIBodiesOff (403) when the list is empty, else ObjectUnavailable (404), the answer
    a missing or unreadable object under the list also gets.
    """
    if not prefixes:
        raise URIBodiesOff()
    if _unsafe(uri) is not None or not any(uri.startswith(p) for p in prefixes):
        raise ObjectUnavailable(uri)
    return uri
