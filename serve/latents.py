"""Latent wire formats: read a latent from safetensors, `.npy` or JSON, checked against the limits."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

import numpy as np
import torch

from model.config import SPATIAL_COMPRESSION, TEMPORAL_COMPRESSION
from model.errors import InputShapeError
from model.validation import check_latent as model_check_latent

from .errors import LimitExceeded, MalformedInput

__all__ = [
    "LatentLimits",
    "SAFETENSORS_TYPES",
    "NPY_TYPES",
    "JSON_TYPES",
    "check_latent",
    "parse_latent",
]

SAFETENSORS_TYPES = ("application/vnd.safetensors", "application/octet-stream")
NPY_TYPES = ("application/x-npy", "application/npy")
JSON_TYPES = ("application/json",)
LATENT_KEY = "latent"  # the tensor name /encode writes and /decode looks for first


@dataclass(frozen=True)
class LatentLimits:
    """What a replica accepts: the model's channel count and the service limits."""

    latent_dim: int
    max_latent_elements: int
    max_json_elements: int
    max_frames: int
    max_pixels: int


def parse_latent(body: bytes, content_type: str, limits: LatentLimits) -> torch.Tensor:
    """The latent in `body`, as (B, C, t, h, w), checked by `check_latent`."""
    if content_type in SAFETENSORS_TYPES:
        latent = _from_safetensors(body)
    elif content_type in NPY_TYPES:
        latent = _from_npy(body)
    else:  # JSON_TYPES; the route refuses every other type before it gets here
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


def _from_safetensors(body: bytes) -> torch.Tensor:
    from safetensors import SafetensorError
    from safetensors.torch import load

    try:
        tensors = load(body)
    except (SafetensorError, ValueError, RuntimeError, OSError) as error:
        raise MalformedInput(f"body is not a safetensors file: {error}") from error
    if LATENT_KEY in tensors:
        return tensors[LATENT_KEY]
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise MalformedInput(
        f"safetensors file holds {sorted(tensors)}; name the latent tensor {LATENT_KEY!r}"
    )


def _from_npy(body: bytes) -> torch.Tensor:
    try:
        array = np.load(io.BytesIO(body), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise MalformedInput(f"body is not a .npy file: {error}") from error
    if not isinstance(array, np.ndarray):  # an .npz archive loads as a mapping
        raise MalformedInput("body is an .npz archive; send a single .npy array")
    if array.dtype.kind != "f":
        raise InputShapeError(f"latent dtype must be floating point, got {array.dtype}")
    return torch.from_numpy(np.ascontiguousarray(array))


def _from_json(body: bytes, max_elements: int) -> torch.Tensor:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise MalformedInput(f"body is not JSON: {error}") from error
    if not isinstance(document, dict) or LATENT_KEY not in document:
        raise MalformedInput(f'JSON body must be an object {{"{LATENT_KEY}": [[...]]}}')
    try:
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
