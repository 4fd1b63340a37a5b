"""What a request sends: its query options (pydantic-validated, clip settings held to the
limits) and its body under a size cap (raw bytes, a multipart upload, or a video named by URI)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import ClientDisconnect

from model.latents import LatentKind
from model.media import ClipSettings
from model.storage import StorageSettings, open_fs

from .admission import within
from .errors import (
    BodyTimeout,
    ClientGone,
    MalformedInput,
    ObjectUnavailable,
    PayloadTooLarge,
    StorageTimeout,
    UnsupportedMediaType,
    refusing,
)
from .limits import limit_clip_settings
from .uris import check_uri

if TYPE_CHECKING:
    from .settings import ServeSettings

__all__ = [
    "VIDEO_BODY_TYPES",
    "DecodeOptions",
    "EncodeOptions",
    "EncodeURIRequest",
    "content_type_of",
    "parse_encode_query",
    "read_body",
    "video_from_body",
]

MULTIPART = "multipart/form-data"
JSON = "application/json"
# Raw container bytes: any video/* type, or untyped bytes.
RAW_VIDEO_TYPES = ("application/octet-stream",)
VIDEO_BODY_TYPES = ["video/*", *RAW_VIDEO_TYPES, MULTIPART, JSON]
UPLOAD_FIELD = "video"

logger = logging.getLogger(__name__)

TensorDtype = Literal["float32", "float16", "bfloat16"]


class EncodeOptions(BaseModel):
    """The service's own `/encode` query parameters; every other parameter is a `ClipSettings` field."""

    model_config = ConfigDict(extra="forbid")

    latent: LatentKind | None = Field(
        default=None,
        description="mean, sample or moments (mean then logvar); default: the service's",
    )
    seed: int | None = Field(default=None, description="base seed of latent=sample")
    key: str | None = Field(
        default=None,
        min_length=1,
        description="clip key seeding latent=sample (a pipeline row's key reproduces it); one clip only",
    )
    format: Literal["safetensors", "json"] = Field(
        default="safetensors", description="safetensors bytes, or JSON for small latents"
    )
    dtype: TensorDtype = Field(default="float32", description="dtype of the returned latent")


class DecodeOptions(BaseModel):
    """`/decode` query parameters."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["mp4", "safetensors"] = Field(
        default="mp4", description="an H.264 MP4, or the frames as safetensors"
    )
    fps: float = Field(default=16.0, gt=0, le=240, description="frame rate of the MP4")
    frames_dtype: Literal["uint8", "float32"] = Field(
        default="uint8",
        description="safetensors only: uint8 frames (B, T, H, W, 3), or the model's float32 "
        "output (B, 3, T, H, W) in about [-1, 1]",
    )


def parse_encode_query(
    query: Mapping[str, str], settings: ServeSettings
) -> tuple[EncodeOptions, ClipSettings]:
    """Split the query into the service's options and the clip settings, validate, check limits.

    Clip fields left out keep the service's configured `clip` settings.
    """
    service = {k: v for k, v in query.items() if k in EncodeOptions.model_fields}
    clip_fields = {k: v for k, v in query.items() if k not in EncodeOptions.model_fields}
    options = EncodeOptions.model_validate(service)
    base = settings.clip.model_dump(exclude_unset=True)
    clip = ClipSettings.model_validate({**base, **clip_fields})
    return options, limit_clip_settings(clip, settings)


class EncodeURIRequest(BaseModel):
    """The JSON body of `/encode`: a video in object storage (`s3://bucket/key.mp4`)."""

    model_config = ConfigDict(extra="forbid")

    uri: str = Field(min_length=1, description="object-storage URI of the video")


def content_type_of(request: Request) -> str:
    """The media type, lower case, without parameters (`multipart/form-data; boundary=x` -> ...)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, limit: int, idle_timeout_s: float) -> bytes:
    """The whole body, refusing one over `limit` bytes before (Content-Length) or while reading,
    and one that sends nothing for `idle_timeout_s` (a stalled upload holds a request slot)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge("request body", int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    stream = request.stream()
    while True:
        try:
            chunk = await within(idle_timeout_s, anext(stream, None), BodyTimeout)
        except ClientDisconnect as error:
            raise ClientGone() from error
        if chunk is None:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge("request body", None, limit)
        chunks.append(chunk)


async def video_from_body(
    request: Request,
    body: bytes,
    settings: ServeSettings,
    storage_pools: Mapping[str, Executor],
) -> tuple[bytes, str]:
    """The video container bytes carried by (or named by) an `/encode` body, and its source:
    the URI a JSON body named, else `sha256:<digest>` of the bytes (for clip keys)."""
    content_type = content_type_of(request)
    if content_type.startswith("video/") or content_type in RAW_VIDEO_TYPES:
        video = body
    elif content_type == MULTIPART:
        video = await _uploaded_video(request, body)
    elif content_type == JSON:
        uri = check_uri(_uri_request(body).uri, settings.allowed_uri_prefixes)
        pool = next(pool for prefix, pool in storage_pools.items() if uri.startswith(prefix))
        return await _fetch_object(uri, settings, pool), uri
    else:
        raise UnsupportedMediaType(content_type, VIDEO_BODY_TYPES)
    return video, "sha256:" + hashlib.sha256(video).hexdigest()


async def _fetch_object(uri: str, settings: ServeSettings, storage_pool: Executor) -> bytes:
    """`_read_object` on its prefix's storage threads, abandoned after `storage_timeout_s` (the
    thread finishes when the store gives up; the pool's size bounds how many can be stuck so)."""
    read = asyncio.get_running_loop().run_in_executor(
        storage_pool, _read_object, uri, settings.max_body_bytes, settings.storage
    )
    return await within(settings.storage_timeout_s, read, StorageTimeout)


def _uri_request(body: bytes) -> EncodeURIRequest:
    with refusing('JSON body must be {"uri": "s3://bucket/key"}'):
        return EncodeURIRequest.model_validate(json.loads(body))


async def _uploaded_video(request: Request, body: bytes) -> bytes:
    from starlette.formparsers import MultiPartException, MultiPartParser

    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(request.headers, once(), max_files=1, max_fields=8)
    try:
        with refusing("multipart body could not be parsed"):
            form = await parser.parse()
    except MultiPartException as error:
        raise MalformedInput(f"multipart body could not be parsed: {error.message}") from error
    try:
        upload = form.get(UPLOAD_FIELD)
        if upload is None or isinstance(upload, str):
            raise MalformedInput(f"multipart body has no file field named {UPLOAD_FIELD!r}")
        return await upload.read()
    finally:
        await form.close()


def _read_object(uri: str, limit: int, storage: StorageSettings) -> bytes:
    """The object at `uri` (already checked against the allowlist), at most `limit` bytes.

    Whatever the store answers (no such bucket or key, access denied, a bucket name it rejects,
    no credentials), the client gets the same ObjectUnavailable; the store's own words go to the
    replica's log only. Every error is caught here: this thread makes storage calls and nothing
    else, and no storage failure is the client's business beyond "not readable".
    """
    try:
        fs, path = open_fs(uri, storage)
        size = fs.size(path)
        if size is not None and size > limit:
            raise PayloadTooLarge(f"object {uri}", int(size), limit)
        with fs.open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except PayloadTooLarge:
        raise
    except Exception as error:
        logger.info("cannot read %s: %s: %s", uri, type(error).__name__, error)
        raise ObjectUnavailable(uri) from None
    if len(data) > limit:
        raise PayloadTooLarge(f"object {uri}", None, limit)
    return data
