"""Wire formats: a latent read from safetensors, `.npy` or JSON (sizes checked against the limits
before anything is allocated), and the answers of `/encode` (safetensors or JSON), `/decode`
(MP4 or safetensors frames) and `/v1/model`."""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from model.config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from model.errors import InputShapeError
from model.media import Clip, encode_mp4, to_uint8_frames
from model.validation import check_latent as model_check_latent

from .errors import LimitExceeded, MalformedInput, PayloadTooLarge, refusing

if TYPE_CHECKING:
    from .inputs import DecodeOptions, EncodeOptions

__all__ = [
    "JSON_TYPES",
    "MP4_MEDIA_TYPE",
    "NPY_TYPES",
    "SAFETENSORS_MEDIA_TYPE",
    "SAFETENSORS_TYPES",
    "LatentLimits",
    "ModelInfo",
    "check_latent",
    "decode_response",
    "encode_response",
    "frames_safetensors",
    "parse_latent",
    "tensor_headers",
]

SAFETENSORS_TYPES = ("application/vnd.safetensors", "application/octet-stream")
NPY_TYPES = ("application/x-npy", "application/npy")
JSON_TYPES = ("application/json",)
LATENT_KEY = "latent"  # the tensor name /encode writes and /decode looks for first
SAFETENSORS_MEDIA_TYPE = "application/vnd.safetensors"
MP4_MEDIA_TYPE = "video/mp4"

# Floating-point dtypes a latent may travel in. float8 and the 4- and 6-bit float types are
# refused: the model's NaN/Inf check and its arithmetic do not run on them.
SAFETENSORS_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
SAFETENSORS_HEADER_BYTES = 8  # a little-endian u64: the length of the JSON header after it
# .npy: little-endian or single-byte-order IEEE floats only (no big-endian, no long double).
NPY_FLOAT_DTYPES = ("<f2", "<f4", "<f8")
# A JSON number with its separator: "-1.2345678e-05, " is 16 characters; 32 leaves room for
# whitespace and more digits, and bounds what a JSON body may hold before it is parsed.
MAX_JSON_CHARS_PER_ELEMENT = 32
ZIP_MAGIC = b"PK\x03\x04"  # an .npz archive


@dataclass(frozen=True)
class LatentLimits:
    """What a replica accepts: the model's channel count and the service limits."""

    latent_dim: int
    max_latent_elements: int
    max_json_elements: int
    max_frames: int
    max_pixels: int


def parse_latent(body: bytes, content_type: str, limits: LatentLimits) -> torch.Tensor:
    """The latent in `body`, as (B, C, t, h, w), checked by `check_latent`.

    Sizes are checked from the headers before anything is allocated; whatever a parser raises on
    bytes that are not what they claim is a 400 (`refusing`).
    """
    if content_type in SAFETENSORS_TYPES:
        with refusing("body is not a safetensors file"):
            latent = _from_safetensors(body, limits.max_latent_elements)
    elif content_type in NPY_TYPES:
        with refusing("body is not a .npy file"):
            latent = _from_npy(body, limits.max_latent_elements)
    else:  # JSON_TYPES; the route refuses every other type before it gets here
        with refusing("body is not JSON holding a latent"):
            latent = _from_json(body, limits.max_json_elements)
    return check_latent(latent, limits)


def check_latent(latent: torch.Tensor, limits: LatentLimits) -> torch.Tensor:
    """Refuse a latent the model cannot or may not decode; answer it as (B, C, t, h, w)."""
    if latent.ndim == 4:
        latent = latent.unsqueeze(0)  # (C, t, h, w) -> (1, C, t, h, w)
    # Rank, dtype, channels, emptiness, NaN/Inf: the model's own checks and messages.
    latent = model_check_latent(latent, limits.latent_dim)
    _, _, t, h, w = latent.shape
    if latent.numel() > limits.max_latent_elements:
        raise LimitExceeded(
            f"latent has {latent.numel()} elements; the limit is {limits.max_latent_elements}"
        )
    frames = 1 + TEMPORAL_COMPRESSION * (t - 1)
    if frames > limits.max_frames:
        raise LimitExceeded(f"latent decodes to {frames} frames; the limit is {limits.max_frames}")
    height, width = h * SPATIAL_COMPRESSION, w * SPATIAL_COMPRESSION
    if height * width > limits.max_pixels:
        raise LimitExceeded(
            f"latent decodes to {height}x{width} = {height * width} pixels per frame; "
            f"the limit is {limits.max_pixels}"
        )
    return latent


def _check_elements(shape: tuple[int, ...], limit: int, what: str) -> None:
    elements = math.prod(shape)
    if elements > limit:
        raise LimitExceeded(f"{what} holds {elements} elements; the limit is {limit}")


def _from_safetensors(body: bytes, max_elements: int) -> torch.Tensor:
    """The latent tensor, its dtype and size read from the header before the data is."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    if len(body) < SAFETENSORS_HEADER_BYTES:
        raise MalformedInput(f"body is not a safetensors file: {len(body)} bytes")
    (header_length,) = struct.unpack("<Q", body[:SAFETENSORS_HEADER_BYTES])
    if header_length > len(body) - SAFETENSORS_HEADER_BYTES:
        raise MalformedInput(
            f"body is not a safetensors file: its header claims {header_length} bytes, the body "
            f"holds {len(body)}"
        )
    header = json.loads(body[SAFETENSORS_HEADER_BYTES : SAFETENSORS_HEADER_BYTES + header_length])
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    if LATENT_KEY in entries:
        name = LATENT_KEY
    elif len(entries) == 1:
        name = next(iter(entries))
    else:
        raise MalformedInput(
            f"safetensors file holds {sorted(entries)}; name the latent tensor {LATENT_KEY!r}"
        )
    dtype = entries[name]["dtype"]
    if dtype not in SAFETENSORS_FLOAT_DTYPES:
        raise InputShapeError(
            f"latent dtype must be floating point ({', '.join(SAFETENSORS_FLOAT_DTYPES)}), "
            f"got {dtype}"
        )
    _check_elements(tuple(int(d) for d in entries[name]["shape"]), max_elements, "the latent")
    try:
        return load(body)[name]
    except SafetensorError as error:  # offsets that do not fit the body, overlapping tensors
        raise MalformedInput(f"body is not a safetensors file: {error}") from error


def _from_npy(body: bytes, max_elements: int) -> torch.Tensor:
    """The array, read by its header's dtype and shape after both are checked (never pickled)."""
    import io

    from numpy.lib import format as npy

    if body.startswith(ZIP_MAGIC):
        raise MalformedInput("body is an .npz archive; send a single .npy array")
    stream = io.BytesIO(body)
    version = npy.read_magic(stream)
    if version == (1, 0):
        shape, fortran_order, dtype = npy.read_array_header_1_0(stream)
    elif version == (2, 0):
        shape, fortran_order, dtype = npy.read_array_header_2_0(stream)
    else:
        raise MalformedInput(f"body is not a .npy file of format 1.0 or 2.0: {version}")
    if dtype.str not in NPY_FLOAT_DTYPES:
        raise InputShapeError(
            "latent dtype must be floating point, little-endian float16, float32 or float64 "
            f"(numpy's default), got {dtype.str}"
        )
    _check_elements(shape, max_elements, "the latent")
    count = math.prod(shape)
    offset = stream.tell()
    if len(body) - offset != count * dtype.itemsize:
        raise MalformedInput(
            f"body is not a .npy file: its header describes {count * dtype.itemsize} data bytes, "
            f"the body holds {len(body) - offset}"
        )
    array = np.frombuffer(body, dtype=dtype, count=count, offset=offset)  # a read-only view
    array = array.reshape(shape, order="F" if fortran_order else "C")
    return torch.from_numpy(array.copy(order="C"))


def _from_json(body: bytes, max_elements: int) -> torch.Tensor:
    if len(body) > max_elements * MAX_JSON_CHARS_PER_ELEMENT:
        raise PayloadTooLarge(
            f"a JSON latent (at most {max_elements} elements)",
            len(body),
            max_elements * MAX_JSON_CHARS_PER_ELEMENT,
        )
    document = json.loads(body)
    if not isinstance(document, dict) or LATENT_KEY not in document:
        raise MalformedInput(f'JSON body must be an object {{"{LATENT_KEY}": [[...]]}}')
    try:
        # A number past float32's range becomes Inf, which check_latent refuses by name.
        with np.errstate(over="ignore"):
            array = np.asarray(document[LATENT_KEY], dtype=np.float32)
    except (ValueError, TypeError) as error:
        raise MalformedInput(
            f"JSON {LATENT_KEY!r} is not a rectangular array of numbers: {error}"
        ) from error
    if array.size > max_elements:
        raise LimitExceeded(
            f"JSON latent has {array.size} elements; JSON takes at most {max_elements}, "
            "send safetensors or .npy instead"
        )
    return torch.from_numpy(array)


# --- answers ------------------------------------------------------------------------------


def frames_safetensors(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """Tensors as one safetensors file (contiguous CPU copies) with string metadata."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata=metadata)


def tensor_headers(name: str, tensor: torch.Tensor) -> dict[str, str]:
    """`X-<Name>-Shape: 1,8,5,8,8` and `X-<Name>-Dtype: float32`."""
    return {
        f"X-{name}-Shape": ",".join(str(s) for s in tensor.shape),
        f"X-{name}-Dtype": str(tensor.dtype).removeprefix("torch."),
    }


def encode_response(
    latent: torch.Tensor,
    clips: Sequence[Clip],
    keys: Sequence[str],
    metadata: dict[str, object],
    options: EncodeOptions,
    max_json_elements: int,
) -> Response:
    """latent (N, C, t, h, w) float32, one row per clip, in the format `options` asks for."""
    latent = latent.to(getattr(torch, options.dtype))
    meta: dict[str, object] = {
        **metadata,
        "shape": list(latent.shape),
        "dtype": options.dtype,
        "frame_indices": [list(c.frame_indices) for c in clips],
        "fps": [c.fps for c in clips],
        "source_size": list(clips[0].source_size),
        "target_size": list(clips[0].target_size),
        "bucket": clips[0].bucket,
        "keys": list(keys),
        **({"decode": notes} if (notes := clips[0].decode_notes()) else {}),  # the video broke early
    }
    headers = {**tensor_headers("Latent", latent), "X-Model-Id": str(metadata["model_id"])}
    if options.format == "json":
        if latent.numel() > max_json_elements:
            raise LimitExceeded(
                f"the latent has {latent.numel()} elements; JSON answers hold at most "
                f"{max_json_elements}: ask format=safetensors"
            )
        return JSONResponse({**meta, "latent": latent.float().tolist()}, headers=headers)
    frame_indices = torch.tensor(
        [list(c.frame_indices) for c in clips], dtype=torch.int64
    )  # (N, T)
    body = frames_safetensors(
        {"latent": latent, "frame_indices": frame_indices},
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in meta.items()},
    )
    return Response(body, media_type=SAFETENSORS_MEDIA_TYPE, headers=headers)


def decode_response(video: torch.Tensor, options: DecodeOptions, model_id: str) -> Response:
    """video (B, 3, T, H, W) float32 in about [-1, 1] as an MP4 (B = 1) or safetensors frames."""
    headers = {"X-Model-Id": model_id}
    if options.format == "mp4":
        frames = to_uint8_frames(video)[0]  # (T, H, W, 3); the route refuses B > 1 for MP4
        headers.update(tensor_headers("Frames", frames))
        return Response(
            encode_mp4(frames.numpy(), options.fps), media_type=MP4_MEDIA_TYPE, headers=headers
        )
    if options.frames_dtype == "uint8":
        tensors = {"frames": to_uint8_frames(video)}  # (B, T, H, W, 3)
    else:
        tensors = {"frames": video.float()}  # (B, 3, T, H, W)
    headers.update(tensor_headers("Frames", tensors["frames"]))
    body = frames_safetensors(tensors, {"model_id": model_id, "fps": json.dumps(options.fps)})
    return Response(body, media_type=SAFETENSORS_MEDIA_TYPE, headers=headers)


class ModelInfo(BaseModel):
    """`GET /v1/model`."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    service_version: str
    source: str
    config_hash: str
    device: str
    dtype: str
    latent_kind: str = Field(description="the default of /encode's `latent`")
    latent_dim: int
    latent_channels: int
    temporal_compression: int
    spatial_compression: int
    scale: list[float]
    shift: list[float]
    chunk_frames: int | None
    chunk_latents: int | None
    torch_threads: int = Field(description="intra-op threads of the replica's model thread")
    config: dict[str, object]
    limits: dict[str, int | float]
    allowed_uri_prefixes: list[str] = Field(
        description="what a JSON body {'uri': ...} of /encode may name; empty: URI bodies are off"
    )
    worst_request_bytes: int = Field(
        description="memory of the worst /encode the limits allow (serve/limits.py); "
        "requests over limits.max_request_bytes are refused before decoding"
    )
