"""Bad input over real HTTP: each case its 4xx and a message naming the problem; never a 500."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from bundled_model import LATENT_DIM
from safetensors.torch import save
from serve_testing import (
    CLIP,
    MAX_BODY_BYTES,
    SAFETENSORS,
    TOLERANCE,
    Service,
    max_abs_diff,
    reference_latent,
    safetensors_tensors,
)

from model.latents import ClipEncoder
from model.media import encode_mp4

MP4 = "video/mp4"
NPY = "application/x-npy"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One bad request and what the service must answer."""

    path: str
    status: int
    message: str  # a piece of the answer's `detail`
    body: Callable[[dict[str, bytes]], bytes | Iterator[bytes]] = lambda v: v["carphone_distorted"]
    content_type: str | None = MP4
    params: dict[str, str | int] = field(default_factory=dict)


def safetensors_of(**tensors: torch.Tensor) -> bytes:
    return save(tensors)


def npy_of(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def latent(*shape: int) -> torch.Tensor:
    return torch.zeros(shape)


def with_value(value: float) -> torch.Tensor:
    z = latent(LATENT_DIM, 2, 4, 4)
    z[3, 1, 2, 2] = value
    return z


def nested_json(key: str, depth: int) -> bytes:
    """`{"<key>": [[[...]]]}` nested `depth` levels: past the interpreter's recursion limit."""
    return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"


def safetensors_claiming(dtype: str, shape: list[int], data: bytes = b"\0" * 64) -> bytes:
    """A safetensors file whose header says what a writer might not (dtype, shape)."""
    header = {"latent": {"dtype": dtype, "shape": shape, "data_offsets": [0, len(data)]}}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def npy_claiming(shape: tuple[int, ...], data: bytes = b"") -> bytes:
    """A .npy file of float32 whose header claims `shape`, followed by `data`."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + data


def chunked(data: bytes) -> Iterator[bytes]:
    """A body without Content-Length (chunked transfer): the cap must hold while reading."""
    for start in range(0, len(data), 65536):
        yield data[start : start + 65536]


CASES: dict[str, Case] = {
    # --- /encode: the body ---
    "not a video": Case(
        "/encode",
        400,
        "the video cannot be used: unreadable",
        lambda v: b"not a video at all" * 100,
    ),
    "truncated mp4": Case(
        "/encode", 400, "the video cannot be used", lambda v: v["carphone_pristine"][:3000]
    ),
    "empty body": Case("/encode", 400, "the video cannot be used: empty", lambda v: b""),
    "text content type": Case(
        "/encode", 415, "'text/plain' is not accepted", content_type="text/plain"
    ),
    "no content type": Case("/encode", 415, "(none)", content_type=None),
    "body too large": Case(
        "/encode", 413, f"limit is {MAX_BODY_BYTES} bytes", lambda v: v["bigbuckbunny"]
    ),
    "chunked body too large": Case(
        "/encode", 413, f"limit is {MAX_BODY_BYTES} bytes", lambda v: chunked(v["bigbuckbunny"])
    ),
    "multipart without video field": Case(
        "/encode",
        400,
        "no file field named 'video'",
        lambda v: b'--xyz\r\nContent-Disposition: form-data; name="other"\r\n\r\nhi\r\n--xyz--\r\n',
        content_type="multipart/form-data; boundary=xyz",
    ),
    "broken multipart": Case(
        "/encode",
        400,
        "multipart",
        lambda v: b"--xyz\r\nnonsense",
        "multipart/form-data; boundary=xyz",
    ),
    "JSON not a URI request": Case("/encode", 400, '{"uri"', lambda v: b"[1, 2", JSON),
    "JSON with unknown field": Case(
        "/encode", 422, "uri", lambda v: json.dumps({"url": "s3://b/k"}).encode(), JSON
    ),
    "source resolution too high": Case(
        "/encode",
        422,
        "640x400 = 256000 pixels",
        lambda v: encode_mp4(np.zeros((5, 400, 640, 3), np.uint8), 25),
    ),
    "video too short": Case(
        "/encode",
        400,
        "too_short: 120 frames available",
        params={"num_frames": 17, "frame_stride": 10},
    ),
    # --- /encode: the parameters ---
    "too many frames": Case("/encode", 422, "the limit is 17", params={"num_frames": 33}),
    "resolution too high": Case("/encode", 422, "pixels", params={"height": 128, "width": 128}),
    "bucket too large": Case("/encode", 422, "pixels", params={"buckets": "9x64x64,9x128x256"}),
    "frames not 1 + 4k": Case("/encode", 422, "1 + 4k", params={"num_frames": 10}),
    "unknown parameter": Case("/encode", 422, "Extra inputs", params={"colour": "red"}),
    "unknown latent kind": Case(
        "/encode", 422, "'mean', 'sample' or 'moments'", params={"latent": "max"}
    ),
    "negative stride": Case(
        "/encode", 422, "greater than or equal to 1", params={"frame_stride": -1}
    ),
    "too many clips asked": Case(
        "/encode", 422, "num_clips=5", params={"clip_mode": "uniform", "num_clips": 5}
    ),
    "too many clips cut": Case(
        "/encode", 422, "more than 4 clips", lambda v: v["bikes"], params={"clip_mode": "all"}
    ),
    "key for several clips": Case(
        "/encode",
        422,
        "key names one clip",
        params={"clip_mode": "uniform", "num_clips": 2, "key": "k", "latent": "sample"},
    ),
    "JSON answer too large": Case(
        "/encode",
        422,
        "format=safetensors",
        params={"format": "json", "num_frames": 17, "clip_mode": "uniform", "num_clips": 4},
    ),
    # --- /decode ---
    "not safetensors": Case(
        "/decode", 400, "not a safetensors file", lambda v: b"\x10garbage" * 8, SAFETENSORS
    ),
    "not npy": Case("/decode", 400, "not a .npy file", lambda v: b"\x93NUMPY garbage", NPY),
    "npz archive": Case(
        "/decode",
        400,
        ".npz archive",
        lambda v: (lambda b: (np.savez(b, a=np.zeros(3)), b.getvalue())[1])(io.BytesIO()),
        NPY,
    ),
    "not JSON": Case("/decode", 400, "not JSON", lambda v: b"{latent: ", JSON),
    "JSON without latent": Case("/decode", 400, '"latent"', lambda v: b'{"z": [1]}', JSON),
    "JSON ragged latent": Case(
        "/decode", 400, "rectangular", lambda v: b'{"latent": [[1, 2], [3]]}', JSON
    ),
    "two unnamed tensors": Case(
        "/decode",
        400,
        "name the latent tensor 'latent'",
        lambda v: safetensors_of(a=latent(LATENT_DIM, 1, 2, 2), b=latent(LATENT_DIM, 1, 2, 2)),
        SAFETENSORS,
    ),
    "wrong channel count": Case(
        "/decode",
        422,
        f"{LATENT_DIM} channels",
        lambda v: safetensors_of(latent=latent(4, 2, 4, 4)),
        SAFETENSORS,
    ),
    "wrong rank": Case(
        "/decode",
        422,
        "(B, C, T, H, W)",
        lambda v: npy_of(np.zeros((LATENT_DIM, 4, 4), np.float32)),
        NPY,
    ),
    "integer latent": Case(
        "/decode",
        422,
        "floating",
        lambda v: npy_of(np.zeros((LATENT_DIM, 2, 4, 4), np.int32)),
        NPY,
    ),
    "NaN latent": Case(
        "/decode",
        422,
        "NaN or Inf",
        lambda v: safetensors_of(latent=with_value(float("nan"))),
        SAFETENSORS,
    ),
    "Inf latent (JSON)": Case(
        "/decode",
        422,
        "NaN or Inf",
        lambda v: json.dumps({"latent": with_value(float("inf")).tolist()}).encode(),
        JSON,
    ),
    "-Inf latent (npy)": Case(
        "/decode", 422, "NaN or Inf", lambda v: npy_of(with_value(float("-inf")).numpy()), NPY
    ),
    "latent too large": Case(
        "/decode",
        422,
        "elements",
        lambda v: safetensors_of(latent=latent(LATENT_DIM, 5, 12, 13)),
        SAFETENSORS,
    ),
    "latent decodes to too many frames": Case(
        "/decode",
        422,
        "21 frames",
        lambda v: safetensors_of(latent=latent(LATENT_DIM, 6, 2, 2)),
        SAFETENSORS,
    ),
    "latent decodes too large": Case(
        "/decode",
        422,
        "104x104",
        lambda v: safetensors_of(latent=latent(LATENT_DIM, 1, 13, 13)),
        SAFETENSORS,
    ),
    "MP4 of a batch": Case(
        "/decode",
        422,
        "MP4 holds one video",
        lambda v: safetensors_of(latent=latent(2, LATENT_DIM, 1, 2, 2)),
        SAFETENSORS,
    ),
    "decode of a video": Case("/decode", 415, "'video/mp4' is not accepted"),
    # --- what parsers raise on hostile bytes: each a 4xx by the one rule, never a 500 ---
    "JSON URI body nested 100,000 deep": Case(
        "/encode", 400, "RecursionError", lambda v: nested_json("uri", 100_000), JSON
    ),
    "JSON latent nested 100,000 deep": Case(
        "/decode", 400, "RecursionError", lambda v: nested_json("latent", 100_000), JSON
    ),
    "JSON latent with a 400-digit integer": Case(
        "/decode",
        400,
        "OverflowError",
        lambda v: b'{"latent": [[[[' + b"9" * 400 + b"]]]]}",
        JSON,
    ),
    "JSON latent longer than its element limit allows": Case(
        "/decode", 413, "JSON latent", lambda v: b'{"latent": [' + b"0," * 300_000 + b"0]}", JSON
    ),
    "target_fps=1e-308": Case("/encode", 422, "OverflowError", params={"target_fps": "1e-308"}),
    "big-endian npy": Case(
        "/decode",
        422,
        "got >f4",
        lambda v: npy_of(np.zeros((LATENT_DIM, 2, 4, 4), ">f4")),
        NPY,
    ),
    "longdouble npy": Case(
        "/decode",
        422,
        "got <f16",
        lambda v: npy_of(np.zeros((LATENT_DIM, 2, 4, 4), np.longdouble)),
        NPY,
    ),
    "npy header claiming 3.6 TiB": Case(
        "/decode", 422, "elements", lambda v: npy_claiming((LATENT_DIM, 1024, 1024, 57600)), NPY
    ),
    "npy shorter than its header": Case(
        "/decode", 400, "data bytes", lambda v: npy_claiming((LATENT_DIM, 2, 4, 4)), NPY
    ),
    **{
        f"safetensors {dtype}": Case(
            "/decode",
            422,
            f"got {dtype}",
            lambda v, dtype=dtype: safetensors_claiming(dtype, [LATENT_DIM, 2, 4, 4]),
            SAFETENSORS,
        )
        for dtype in ("F8_E4M3", "F8_E5M2", "F4", "F6_E2M3", "F6_E3M2")
    },
    "safetensors header longer than the body": Case(
        "/decode",
        400,
        "header claims",
        lambda v: struct.pack("<Q", 2**62) + b"{}",
        SAFETENSORS,
    ),
    "safetensors offsets past the body": Case(
        "/decode",
        400,
        "not a safetensors file",
        lambda v: safetensors_claiming("F32", [LATENT_DIM, 1, 2, 2], b"\0" * 8),
        SAFETENSORS,
    ),
    "zero fps": Case(
        "/decode",
        422,
        "greater than 0",
        lambda v: safetensors_of(latent=latent(LATENT_DIM, 1, 2, 2)),
        SAFETENSORS,
        params={"fps": 0},
    ),
}


@pytest.fixture(scope="module")
def videos(sample_videos: dict[str, Path]) -> dict[str, bytes]:
    return {name: path.read_bytes() for name, path in sample_videos.items()}


@pytest.fixture(scope="module")
def replica_before(service: Service, videos: dict[str, bytes]) -> str:
    """The replica that answered a good request before any bad one."""
    answer = service.client.post(
        f"{service.url}/encode",
        content=videos["carphone_distorted"],
        headers={**service.auth, "Content-Type": MP4},
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-replica-id"]


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_a_4xx_naming_the_problem(
    service: Service, videos: dict[str, bytes], replica_before: str, name: str
) -> None:
    case = CASES[name]
    headers = dict(service.auth)
    if case.content_type is not None:
        headers["Content-Type"] = case.content_type
    answer = service.client.post(
        f"{service.url}{case.path}", params=case.params, content=case.body(videos), headers=headers
    )
    assert answer.status_code == case.status, answer.text
    detail = answer.json()["detail"]
    assert case.message in (detail if isinstance(detail, str) else json.dumps(detail)), detail


def test_the_replica_keeps_serving_after_bad_input(
    service: Service, clip_encoder: ClipEncoder, videos: dict[str, bytes], replica_before: str
) -> None:
    """Runs after the cases above (file order): same replica, still ready, still exact."""
    from ray import serve

    assert service.client.get(f"{service.url}/readyz").status_code == 200
    answer = service.client.post(
        f"{service.url}/encode",
        content=videos["carphone_pristine"],
        headers={**service.auth, "Content-Type": MP4},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-replica-id"] == replica_before  # not restarted
    expected = reference_latent(clip_encoder, videos["carphone_pristine"], CLIP)
    assert max_abs_diff(safetensors_tensors(answer.content)["latent"], expected) <= TOLERANCE
    deployment = serve.status().applications["wfvae-main"].deployments["LatentServer"]
    assert deployment.status == "HEALTHY"


def test_slow_requests_time_out(strict_service: Service, videos: dict[str, bytes]) -> None:
    """An app whose timeout every request overruns: 504 with a message, and it keeps answering."""
    encode = strict_service.client.post(
        f"{strict_service.url}/encode",
        content=videos["carphone_distorted"],
        headers={"Content-Type": MP4},
    )
    decode = strict_service.client.post(
        f"{strict_service.url}/decode",
        content=safetensors_of(latent=latent(LATENT_DIM, 1, 2, 2)),
        headers={"Content-Type": SAFETENSORS},
    )
    for answer in (encode, decode):
        assert answer.status_code == 504, answer.text
        assert "longer than 0.001 s" in answer.json()["detail"]
    assert strict_service.client.get(f"{strict_service.url}/readyz").status_code == 200
