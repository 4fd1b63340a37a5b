"""Object storage through fsspec: how to reach it (`StorageSettings`), a filesystem for a URI, an object's bytes.

The pipeline and the service both read here; fsspec and its S3 and GCS filesystems are the
optional `storage` extra, imported only when a filesystem is opened.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

__all__ = [
    "GCS_PROTOCOLS",
    "S3_PROTOCOLS",
    "StorageSettings",
    "open_fs",
    "protocol_of",
    "read_bytes",
]

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


def open_fs(uri: str, storage: StorageSettings) -> tuple[AbstractFileSystem, str]:
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


def read_bytes(uri: str, storage: StorageSettings | None = None) -> bytes:
    """The whole file at a local path (`file://` or none) or at any fsspec URI."""
    if "://" not in uri or uri.startswith("file://"):
        return Path(uri.removeprefix("file://")).read_bytes()
    fs, path = open_fs(uri, storage or StorageSettings())
    with fs.open(path, "rb") as handle:
        return handle.read()
