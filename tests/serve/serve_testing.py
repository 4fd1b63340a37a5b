"""Helpers of the serve tests: in-process references and readers of the service's answers."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass

import av
import httpx
import numpy as np
import torch
from bundled_model import BATCH_TOLERANCE, LATENT_DIM
from safetensors.torch import load

from model.latents import ClipEncoder, EncoderSettings
from model.media import ClipSettings, sample_clips
from model.storage import StorageSettings
from serve.settings import ServeArgs

SAFETENSORS = "application/vnd.safetensors"
TOLERANCE = BATCH_TOLERANCE  # requests batched together vs one clip in process

TOKEN = "test-token"
# Tiny clips keep the whole package fast on two shared cores.
CLIP = ClipSettings(num_frames=9, height=64, width=64)
MAX_BODY_BYTES = (
    800_000  # bikes (510 kB) and carphone (589 kB) fit; bigbuckbunny (1.06 MB) does not
)
S3_CREDENTIALS = {"key": "testing", "secret": "testing"}
BUCKET = "serve-inputs"
# URI bodies may name objects under this folder only; the rest of the bucket, and every other
# bucket the credentials reach, must look the same as a missing object.
ALLOWED_PREFIX = f"s3://{BUCKET}/clips/"
# The largest latent main_args admits: max_frames 17 -> 5 latent frames, max_pixels 96x96 -> 12x12.
MAX_LATENT_ELEMENTS = LATENT_DIM * 5 * 12 * 12
# JSON latents: 3 clips of 9x64x64 (C x 3 x 8 x 8 each, 576 C) fit; 4 of 17x64x64 (1280 C) do not.
MAX_JSON_ELEMENTS = LATENT_DIM * 1024


@dataclass(frozen=True)
class Service:
    """A running app: its base URL, a client carrying the token, and the settings it runs with."""

    url: str
    client: httpx.Client
    args: ServeArgs

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}


# Long clips stream through the Causal Cache in the service; the pipeline reference uses the same.
ENCODER = EncoderSettings(dtype="float32", device="cpu", chunk_frames=8)


# gs:// objects under this prefix sit behind an endpoint that accepts connections and never
# answers (tests/serve/conftest.py `silent_endpoint`): an unreachable object store.
SILENT_PREFIX = "gs://unreachable-bucket/"
STORAGE_TIMEOUT_S = 2.0


def main_args(s3_endpoint: str, silent_endpoint: str) -> ServeArgs:
    return ServeArgs(
        encoder=ENCODER,
        chunk_latents=2,
        clip=CLIP,
        auth_token=TOKEN,
        max_body_bytes=MAX_BODY_BYTES,
        max_frames=17,
        max_pixels=96 * 96,
        max_clips=4,
        max_source_pixels=200_000,  # bikes (640x272) passes, a 640x400 video does not
        max_latent_elements=MAX_LATENT_ELEMENTS,
        max_json_elements=MAX_JSON_ELEMENTS,
        max_batch_size=16,
        batch_wait_timeout_s=0.25,  # long enough that 16 concurrent requests share batches
        max_ongoing_requests=32,
        num_cpus=0.5,
        torch_threads=1,
        storage=StorageSettings(
            endpoint_url=s3_endpoint, gcs_endpoint_url=silent_endpoint, options=S3_CREDENTIALS
        ),
        allowed_uri_prefixes=[ALLOWED_PREFIX, SILENT_PREFIX],
        storage_timeout_s=STORAGE_TIMEOUT_S,
        storage_threads=2,
    )


def s3_client(s3_endpoint: str):  # -> boto3 S3 client
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=S3_CREDENTIALS["key"],
        aws_secret_access_key=S3_CREDENTIALS["secret"],
        region_name="us-east-1",
    )


def strict_args() -> ServeArgs:
    """A second app whose every encode or decode overruns its timeout."""
    return ServeArgs(
        encoder=EncoderSettings(dtype="float32", device="cpu"),
        clip=CLIP,
        request_timeout_s=0.001,
        num_cpus=0.25,
        torch_threads=1,
    )


# The guard app's worst request: a 720p source, 33 frames, two clips at the extreme aspect ratio.
GUARD_SOURCE_HW = (720, 1280)
GUARD_MAX_FRAMES = 33
GUARD_MAX_PIXELS = 64 * 64
GUARD_MAX_CLIPS = 2
GUARD_ASPECT = 4.0
# Its budget: the footprint of that request is ~190 MiB; decoding it the old way (the whole clip
# at source size, resized through float32) peaked at ~640 MiB.
GUARD_MAX_REQUEST_BYTES = 256 * 1024 * 1024
GUARD_SLOTS = 2  # request slots of its replica
GUARD_BODY_IDLE_S = 2.0


def guard_args() -> ServeArgs:
    """A third app for the attack and overload tests: URI bodies off, limits sized for a 720p
    source, a memory budget its worst request fits, two request slots, a short body timeout."""
    return ServeArgs(
        encoder=ENCODER,
        clip=CLIP,
        auth_token=TOKEN,
        max_body_bytes=4 * 1024 * 1024,
        max_source_pixels=GUARD_SOURCE_HW[0] * GUARD_SOURCE_HW[1],
        max_frames=GUARD_MAX_FRAMES,
        max_pixels=GUARD_MAX_PIXELS,
        max_clips=GUARD_MAX_CLIPS,
        max_aspect_ratio=GUARD_ASPECT,
        max_request_bytes=GUARD_MAX_REQUEST_BYTES,
        max_batch_size=GUARD_SLOTS,
        max_ongoing_requests=GUARD_SLOTS,
        max_queued_requests=2,
        retry_after_s=1,
        body_idle_timeout_s=GUARD_BODY_IDLE_S,
        num_cpus=0.25,
        torch_threads=1,
    )


def reference_latent(
    encoder: ClipEncoder,
    video: bytes,
    settings: ClipSettings,
    keys: list[str] | None = None,
) -> torch.Tensor:
    """What the pipeline writes for `video`: its clips through its ClipEncoder, (N, C, t, h, w)."""
    clips = sample_clips(video, settings)
    return torch.from_numpy(encoder.encode_clips([c.frames for c in clips], keys))


def safetensors_tensors(body: bytes) -> dict[str, torch.Tensor]:
    return load(body)


def safetensors_metadata(body: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file (8-byte little-endian header length, JSON header)."""
    (length,) = struct.unpack("<Q", body[:8])
    return json.loads(body[8 : 8 + length]).get("__metadata__", {})


def mp4_frames(body: bytes) -> np.ndarray:
    """Every frame of an MP4 as (T, H, W, 3) uint8."""
    with av.open(io.BytesIO(body)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        raise AssertionError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    return float((a.float() - b.float()).abs().max())
