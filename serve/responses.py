"""Answers of `/encode` and `/decode`: safetensors, JSON or MP4 bodies, with shape and dtype headers."""

from __future__ import annotations

import json
from collections.abc import Sequence

import torch
from fastapi.responses import JSONResponse, Response

from model.media import Clip, encode_mp4, to_uint8_frames

from .errors import LimitExceeded
from .schemas import DecodeOptions, EncodeOptions

__all__ = [
    "SAFETENSORS_MEDIA_TYPE",
    "decode_response",
    "encode_response",
    "frames_safetensors",
    "tensor_headers",
]

SAFETENSORS_MEDIA_TYPE = "application/vnd.safetensors"
MP4_MEDIA_TYPE = "video/mp4"


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
        **(
            {"decode": clips[0].decode_notes()} if clips[0].decode_notes() else {}
        ),  # the video broke early
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
