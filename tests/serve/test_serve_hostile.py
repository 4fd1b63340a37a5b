"""Hostile input, generated: every parser answers a valid result or a 4xx, never anything else.

In process, the parsers are pure functions of the request's bytes and text; hypothesis throws
generated bodies, query strings and URIs at them. A handful of the same go over real HTTP with
generated headers too, and the replica must still be the same one, ready, afterwards.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from bundled_model import LATENT_DIM
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from serve_testing import ALLOWED_PREFIX, CLIP, Service

from model.media import encode_mp4, sample_clips
from serve.errors import LimitExceeded, refusing, status_for
from serve.formats import LatentLimits, parse_latent
from serve.inputs import EncodeURIRequest, _uri_request, parse_encode_query
from serve.settings import ServeArgs
from serve.uris import check_uri

LIMITS = LatentLimits(
    latent_dim=LATENT_DIM,
    max_latent_elements=LATENT_DIM * 5 * 12 * 12,
    max_json_elements=LATENT_DIM * 1024,
    max_frames=17,
    max_pixels=96 * 96,
)
QUERY_SETTINGS = ServeArgs(clip=CLIP, max_frames=17, max_pixels=96 * 96, max_clips=4)
DTYPES = ["F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2", "F4", "F6_E2M3", "I32", "BOOL", "?"]
NPY_DESCRS = ["<f4", ">f4", "<f2", "<f8", "<f16", "<i4", "|b1", "O", "<c8", "|V8", "nonsense"]
QUERY_KEYS = [
    *(f for f in ("num_frames", "frame_stride", "target_fps", "start_frame", "clip_mode")),
    *("num_clips", "height", "width", "buckets", "resize_mode", "latent", "seed", "key"),
    *("format", "dtype", "colour", ""),
]
NUMBERISH = st.sampled_from(
    ["0", "-1", "1e-308", "1e308", "nan", "inf", "-0", "9" * 5000, "17", "1.5", "0x11", " 9"]
)
LATENT_TYPES = ["application/json", "application/x-npy", "application/vnd.safetensors"]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=64)

# Hypothesis' deadline would flake on two shared cores; the examples are bounded in size instead.
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def status_of(error: BaseException) -> int:
    """The status the app answers for `error` (pydantic's ValidationError has its own handler)."""
    return 422 if isinstance(error, ValidationError) else status_for(error)


def assert_valid_or_4xx(parse: Callable[[], object]) -> object | None:
    try:
        return parse()
    except Exception as error:  # noqa: BLE001 - the status of any error is what is checked
        assert 400 <= status_of(error) < 500, f"{type(error).__name__}: {error}"
        return None


# --- generated bodies -------------------------------------------------------------------------
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=40,
)


@st.composite
def json_bodies(draw: st.DrawFn, key: str) -> bytes:
    kind = draw(st.sampled_from(["value", "wrapped", "deep", "bytes"]))
    if kind == "deep":  # nesting past the interpreter's recursion limit, or just under it
        depth = draw(st.sampled_from([900, 5_000, 100_000]))
        return b'{"' + key.encode() + b'": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == "bytes":
        return draw(st.binary(max_size=256))
    value = draw(json_values)
    return json.dumps({key: value} if kind == "wrapped" else value).encode()


@st.composite
def safetensors_bodies(draw: st.DrawFn) -> bytes:
    entries = draw(
        st.dictionaries(
            st.sampled_from(["latent", "other", "__metadata__"]),
            st.fixed_dictionaries(
                {
                    "dtype": st.sampled_from(DTYPES),
                    "shape": st.lists(st.integers(-2, 2**40), max_size=6),
                    "data_offsets": st.lists(st.integers(-2, 2**20), min_size=2, max_size=2),
                }
            ),
            max_size=2,
        )
    )
    header = json.dumps(entries).encode()
    length = draw(st.sampled_from([len(header), 2**63, 0, len(header) + 1]))
    return struct.pack("<Q", length) + header + draw(st.binary(max_size=512))


@st.composite
def npy_bodies(draw: st.DrawFn) -> bytes:
    descr = draw(st.sampled_from(NPY_DESCRS))
    shape = tuple(draw(st.lists(st.integers(0, 2**40), max_size=6)))
    fortran = draw(st.booleans())
    header = f"{{'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, }}".encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    version = draw(st.sampled_from([b"\x01\x00", b"\x02\x00", b"\x03\x00", b"\x09\x09"]))
    size = struct.pack("<H" if version == b"\x01\x00" else "<I", len(header))
    return b"\x93NUMPY" + version + size + header + draw(st.binary(max_size=512))


def valid_latent_bodies() -> st.SearchStrategy[tuple[bytes, str]]:
    """Real latents of random small shapes, so the generator also reaches the accepting side."""
    from safetensors.torch import save

    shapes = st.tuples(st.just(LATENT_DIM), st.integers(1, 3), st.integers(1, 4), st.integers(1, 4))
    return shapes.map(
        lambda shape: (save({"latent": torch.randn(shape)}), "application/vnd.safetensors")
    )


latent_bodies = st.one_of(
    st.tuples(safetensors_bodies(), st.just("application/vnd.safetensors")),
    st.tuples(npy_bodies(), st.just("application/x-npy")),
    st.tuples(json_bodies("latent"), st.just("application/json")),
    st.tuples(st.binary(max_size=256), st.sampled_from(["application/x-npy", "application/json"])),
    valid_latent_bodies(),
)


@FAST
@given(latent_bodies)
def test_latent_parsers_answer_a_latent_or_a_4xx(case: tuple[bytes, str]) -> None:
    body, content_type = case
    latent = assert_valid_or_4xx(lambda: parse_latent(body, content_type, LIMITS))
    if latent is not None:
        assert isinstance(latent, torch.Tensor) and latent.ndim == 5
        assert latent.shape[1] == LATENT_DIM and latent.is_floating_point()
        assert latent.numel() <= LIMITS.max_latent_elements
        assert bool(torch.isfinite(latent).all())


@FAST
@given(st.dictionaries(st.sampled_from(QUERY_KEYS), NUMBERISH | st.text(max_size=24), max_size=6))
def test_query_strings_answer_settings_or_a_4xx(query: dict[str, str]) -> None:
    parsed = assert_valid_or_4xx(lambda: parse_encode_query(query, QUERY_SETTINGS))
    if parsed is not None:
        _, clip = parsed
        assert clip.num_frames <= QUERY_SETTINGS.max_frames
        assert clip.height * clip.width <= QUERY_SETTINGS.max_pixels


@FAST
@given(json_bodies("uri") | st.text(max_size=64).map(lambda t: json.dumps({"uri": t}).encode()))
def test_uri_bodies_answer_an_allowed_uri_or_a_4xx(body: bytes) -> None:
    def parse() -> str:
        return check_uri(_uri_request(body).uri, [ALLOWED_PREFIX])

    uri = assert_valid_or_4xx(parse)
    if uri is not None:
        assert isinstance(uri, str) and uri.startswith(ALLOWED_PREFIX) and "::" not in uri
        assert EncodeURIRequest(uri=uri).uri == uri


@pytest.fixture(scope="module")
def short_video() -> bytes:
    """13 frames of 24x40: cheap to decode many times."""
    frames = np.random.default_rng(0).integers(0, 255, (13, 24, 40, 3), dtype=np.uint8)
    return encode_mp4(frames, 25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "target_fps": st.sampled_from(["1e-308", "5e-324", "1e308", "inf", "0.001", "25"]),
            "frame_stride": st.sampled_from(["1", "3", str(2**62), "9" * 40]),
            "start_frame": st.sampled_from(["0", "12", str(2**63)]),
            "clip_mode": st.sampled_from(["first", "uniform", "all"]),
            "num_clips": st.sampled_from(["1", "4"]),
            "resize_mode": st.sampled_from(["crop", "stretch"]),
        },
    )
)
def test_clip_settings_on_a_video_answer_clips_or_a_4xx(
    short_video: bytes, query: dict[str, str]
) -> None:
    """What /encode does with a query and a video: the pipeline's sampling under the one rule."""

    def sample() -> object:
        _, clip_settings = parse_encode_query(query, QUERY_SETTINGS)
        with refusing("these clip settings cannot be applied to this video", LimitExceeded):
            return sample_clips(short_video, clip_settings)

    clips = assert_valid_or_4xx(sample)
    if clips is not None:
        assert all(c.frames.shape == (CLIP.num_frames, 64, 64, 3) for c in clips)


# --- a handful over HTTP ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def replica_id(service: Service, sample_videos: dict[str, Path]) -> str:
    answer = service.client.post(
        f"{service.url}/encode",
        content=sample_videos["carphone_distorted"].read_bytes(),
        headers={**service.auth, "Content-Type": "video/mp4"},
    )
    assert answer.status_code == 200, answer.text
    return answer.headers["x-replica-id"]


http_requests = st.fixed_dictionaries(
    {
        "path": st.sampled_from(["/encode", "/decode"]),
        "body": latent_bodies.map(lambda c: c[0]) | json_bodies("uri"),
        "content_type": st.tuples(st.integers(0, 9), HEADER_TEXT).map(
            lambda t: t[1] if t[0] == 9 else LATENT_TYPES[t[0] % len(LATENT_TYPES)]
        ),
        # Mostly the right token (7 in 10), so most requests reach the parsers.
        "authorization": st.tuples(st.integers(0, 9), HEADER_TEXT).map(
            lambda t: "token" if t[0] < 7 else "none" if t[0] == 7 else t[1]
        ),
        "extra_header": HEADER_TEXT,
        "query": st.dictionaries(st.sampled_from(QUERY_KEYS), NUMBERISH | HEADER_TEXT, max_size=3),
    }
)


@settings(max_examples=16, deadline=None, derandomize=True)
@given(http_requests)
def test_hostile_requests_over_http_get_a_4xx_or_an_answer(
    service: Service, replica_id: str, request: dict[str, object]
) -> None:
    auth = request["authorization"]
    headers = {
        "Content-Type": str(request["content_type"]),
        "X-Anything": str(request["extra_header"]),
    }
    if auth == "token":
        headers.update(service.auth)
    elif auth != "none":
        headers["Authorization"] = str(auth)
    try:
        answer = service.client.post(
            f"{service.url}{request['path']}",
            params=request["query"],  # type: ignore[arg-type]
            content=request["body"],  # type: ignore[arg-type]
            headers=headers,
        )
    except httpx.LocalProtocolError:  # a header the client itself will not send
        return
    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        assert answer.json()["detail"]


def test_the_replica_survived_the_hostile_requests(service: Service, replica_id: str) -> None:
    assert service.client.get(f"{service.url}/readyz").status_code == 200
    answer = service.client.get(f"{service.url}/v1/model", headers=service.auth)
    assert answer.status_code == 200
    encode = service.client.post(
        f"{service.url}/decode",
        content=json.dumps({"latent": np.zeros((LATENT_DIM, 1, 2, 2)).tolist()}).encode(),
        headers={**service.auth, "Content-Type": "application/json"},
        params={"format": "safetensors"},
    )
    assert encode.status_code == 200 and encode.headers["x-replica-id"] == replica_id
