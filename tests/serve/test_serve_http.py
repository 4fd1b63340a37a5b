"""The service over real HTTP: health, auth, model info, /encode equal to the pipeline, round trips."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from bundled_model import LATENT_DIM
from serve_testing import (
    ALLOWED_PREFIX,
    BUCKET,
    CLIP,
    ENCODER,
    SAFETENSORS,
    SILENT_PREFIX,
    TOKEN,
    TOLERANCE,
    Service,
    max_abs_diff,
    mp4_frames,
    reference_latent,
    s3_client,
    safetensors_metadata,
    safetensors_tensors,
)

from model.latents import ClipEncoder
from model.media import sample_clips, to_uint8_frames

LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114])  # BT.601


def luma(frames: np.ndarray) -> np.ndarray:
    return frames.astype(float) @ LUMA_WEIGHTS  # (T, H, W, 3) -> (T, H, W)


def test_health_endpoints_need_no_token(service: Service) -> None:
    assert service.client.get(f"{service.url}/healthz").json() == {"status": "alive"}
    ready = service.client.get(f"{service.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


@pytest.mark.parametrize("path", ["/v1/model", "/openapi.json"])
@pytest.mark.parametrize("header", [None, "Bearer wrong-token", f"Basic {TOKEN}", TOKEN])
def test_everything_else_needs_the_token(service: Service, path: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    answer = service.client.get(f"{service.url}{path}", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in answer.json()["detail"]


def test_encode_and_decode_need_the_token(service: Service, sample_videos: dict[str, Path]) -> None:
    video = sample_videos["carphone_distorted"].read_bytes()
    encode = service.client.post(
        f"{service.url}/encode", content=video, headers={"Content-Type": "video/mp4"}
    )
    decode = service.client.post(
        f"{service.url}/decode", content=b"{}", headers={"Content-Type": "application/json"}
    )
    assert (encode.status_code, decode.status_code) == (401, 401)


def test_model_info(service: Service, clip_encoder: ClipEncoder) -> None:
    info = service.client.get(f"{service.url}/v1/model", headers=service.auth).json()
    config = clip_encoder.vae.config
    assert info["model_id"] == clip_encoder.model_id
    assert info["latent_dim"] == info["latent_channels"] == config.latent_dim
    assert (info["temporal_compression"], info["spatial_compression"]) == (4, 8)
    assert info["scale"] == list(config.scale) and info["shift"] == list(config.shift)
    assert info["config"]["_class_name"] == "WFVAEModel"
    assert info["config_hash"] == clip_encoder.config_hash
    assert info["limits"]["max_frames"] == service.args.max_frames
    assert info["allowed_uri_prefixes"] == [ALLOWED_PREFIX, SILENT_PREFIX]
    assert info["limits"]["max_request_bytes"] == service.args.max_request_bytes
    assert 0 < info["worst_request_bytes"] <= service.args.max_request_bytes
    assert (
        info["torch_threads"] == service.args.torch_threads
    )  # set on the thread the model runs on
    assert (info["chunk_frames"], info["chunk_latents"]) == (8, 2)
    assert info["service_version"]


def test_openapi_schema_lists_the_routes(service: Service) -> None:
    schema = service.client.get(f"{service.url}/openapi.json", headers=service.auth).json()
    assert {"/encode", "/decode", "/healthz", "/readyz", "/v1/model"} <= set(schema["paths"])
    encode_params = {p["name"] for p in schema["paths"]["/encode"]["post"]["parameters"]}
    assert {
        "num_frames",
        "frame_stride",
        "target_fps",
        "latent",
        "format",
        "buckets",
    } <= encode_params
    assert "video/mp4" in schema["paths"]["/encode"]["post"]["requestBody"]["content"]


def test_encode_equals_the_pipelines_latent(
    service: Service, clip_encoder: ClipEncoder, sample_videos: dict[str, Path]
) -> None:
    video = sample_videos["carphone_pristine"].read_bytes()
    answer = service.client.post(
        f"{service.url}/encode",
        params={"start_frame": 7, "frame_stride": 2},
        content=video,
        headers={**service.auth, "Content-Type": "video/mp4"},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == SAFETENSORS
    settings = CLIP.model_copy(update={"start_frame": 7, "frame_stride": 2})
    expected = reference_latent(clip_encoder, video, settings)  # (1, C, 3, 8, 8)
    latent = safetensors_tensors(answer.content)["latent"]
    assert max_abs_diff(latent, expected) <= TOLERANCE
    assert answer.headers["x-latent-shape"] == f"1,{LATENT_DIM},3,8,8"
    assert answer.headers["x-latent-dtype"] == "float32"
    meta = safetensors_metadata(answer.content)
    assert meta["model_id"] == clip_encoder.model_id == answer.headers["x-model-id"]
    assert json.loads(meta["frame_indices"]) == [list(range(7, 7 + 2 * 9, 2))]
    assert json.loads(meta["scale"]) == list(clip_encoder.vae.config.scale)
    assert meta["latent_kind"] == "mean"
    assert json.loads(meta["source_size"]) == [144, 176]
    laps = dict(part.strip().split(";dur=") for part in answer.headers["server-timing"].split(","))
    assert {"video", "batch", "respond", "model"} <= set(laps)
    assert all(float(ms) >= 0 for ms in laps.values())


def test_encode_accepts_multipart_json_answers_and_several_clips(
    service: Service, clip_encoder: ClipEncoder, sample_videos: dict[str, Path]
) -> None:
    video = sample_videos["bikes"].read_bytes()
    params = {"clip_mode": "uniform", "num_clips": 3, "format": "json", "resize_mode": "stretch"}
    answer = service.client.post(
        f"{service.url}/encode",
        params=params,
        files={"video": ("bikes.mp4", video, "video/mp4")},
        headers=service.auth,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    settings = CLIP.model_copy(
        update={"clip_mode": "uniform", "num_clips": 3, "resize_mode": "stretch"}
    )
    expected = reference_latent(clip_encoder, video, settings)  # (3, C, 3, 8, 8)
    assert body["shape"] == [3, LATENT_DIM, 3, 8, 8] and body["dtype"] == "float32"
    assert max_abs_diff(torch.tensor(body["latent"]), expected) <= TOLERANCE
    clips = sample_clips(video, settings)
    assert body["frame_indices"] == [c.frame_indices for c in clips]


def test_encode_reads_a_video_from_object_storage(
    service: Service, clip_encoder: ClipEncoder, sample_videos: dict[str, Path], s3_endpoint: str
) -> None:
    video = sample_videos["carphone_distorted"].read_bytes()
    s3 = s3_client(s3_endpoint)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="clips/carphone.mp4", Body=video)
    uri = f"s3://{BUCKET}/clips/carphone.mp4"
    answer = service.client.post(f"{service.url}/encode", json={"uri": uri}, headers=service.auth)
    assert answer.status_code == 200, answer.text
    latent = safetensors_tensors(answer.content)["latent"]
    assert max_abs_diff(latent, reference_latent(clip_encoder, video, CLIP)) <= TOLERANCE
    assert safetensors_metadata(answer.content)["source"] == uri


@pytest.mark.parametrize("kind", ["moments", "sample"])
def test_encode_other_latent_kinds_match_the_pipeline(
    service: Service, sample_videos: dict[str, Path], kind: str
) -> None:
    video = sample_videos["carphone_pristine"].read_bytes()
    params: dict[str, str | int] = {"latent": kind, "seed": 7, "key": "clip-0"}
    answer = service.client.post(
        f"{service.url}/encode",
        params=params,
        content=video,
        headers={**service.auth, "Content-Type": "video/mp4"},
    )
    assert answer.status_code == 200, answer.text
    reference = ClipEncoder.from_settings(
        ENCODER.model_copy(update={"latent_kind": kind, "seed": 7})
    )
    expected = reference_latent(reference, video, CLIP, keys=["clip-0"])
    latent = safetensors_tensors(answer.content)["latent"]
    assert max_abs_diff(latent, expected) <= TOLERANCE
    assert latent.shape[1] == (2 * LATENT_DIM if kind == "moments" else LATENT_DIM)


def test_round_trip_through_decode(
    service: Service, clip_encoder: ClipEncoder, sample_videos: dict[str, Path]
) -> None:
    """encode -> decode on a real video: the frames equal in-process decoding of the same latent."""
    video = sample_videos["bikes"].read_bytes()
    encoded = service.client.post(
        f"{service.url}/encode",
        params={"start_frame": 40},
        content=video,
        headers={**service.auth, "Content-Type": "video/mp4"},
    )
    assert encoded.status_code == 200, encoded.text
    latent = safetensors_tensors(encoded.content)["latent"]  # (1, C, 3, 8, 8)
    with torch.inference_mode():
        expected = clip_encoder.vae.decode(latent)  # (1, 3, 9, 64, 64)

    raw = service.client.post(
        f"{service.url}/decode",
        params={"format": "safetensors", "frames_dtype": "float32"},
        content=encoded.content,
        headers={**service.auth, "Content-Type": SAFETENSORS},
    )
    assert raw.status_code == 200, raw.text
    assert max_abs_diff(safetensors_tensors(raw.content)["frames"], expected) <= TOLERANCE

    mp4 = service.client.post(
        f"{service.url}/decode",
        params={"fps": 12.5},
        content=encoded.content,
        headers={**service.auth, "Content-Type": SAFETENSORS},
    )
    assert mp4.status_code == 200, mp4.text
    assert mp4.headers["content-type"] == "video/mp4"
    frames = mp4_frames(mp4.content)  # (9, 64, 64, 3), lossy H.264
    assert frames.shape == (9, 64, 64, 3)
    exact = to_uint8_frames(expected)[0].numpy()
    # H.264 keeps luma (yuv420p halves chroma): ~2.3 levels off on these frames, where the decoded
    # frames of another clip of bikes (start frame 0 or 100) are 45 or more off.
    assert np.abs(luma(frames) - luma(exact)).mean() < 6.0


def test_decode_reads_npy_json_and_4d_latents_alike(
    service: Service, clip_encoder: ClipEncoder
) -> None:
    generator = torch.Generator().manual_seed(3)
    latent = torch.randn(LATENT_DIM, 2, 4, 6, generator=generator)  # (C, t, h, w)
    with torch.inference_mode():
        expected = to_uint8_frames(clip_encoder.vae.decode(latent[None]))  # (1, 5, 32, 48, 3)
    npy = io.BytesIO()
    np.save(npy, latent.numpy())
    bodies = {
        "application/x-npy": npy.getvalue(),
        "application/json": json.dumps({"latent": latent.tolist()}).encode(),
    }
    for content_type, body in bodies.items():
        answer = service.client.post(
            f"{service.url}/decode",
            params={"format": "safetensors"},
            content=body,
            headers={**service.auth, "Content-Type": content_type},
        )
        assert answer.status_code == 200, (content_type, answer.text)
        frames = safetensors_tensors(answer.content)["frames"]
        assert frames.dtype == torch.uint8 and frames.shape == (1, 5, 32, 48, 3)
        # uint8 rounding may flip a value sitting on a .5 boundary between processes
        assert max_abs_diff(frames, expected) <= 1
